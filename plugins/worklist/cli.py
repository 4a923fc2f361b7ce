"""``dicombox worklist refresh | list | add``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.tables import format_table
from dicombox.plugins.worklist.items import SCHEDULED, save_items
from dicombox.plugins.worklist.performed import (
    Performed,
    answered,
    performed_by_item,
    summary,
)
from dicombox.plugins.worklist.poll import poll_and_report
from dicombox.plugins.worklist.settings import WorklistSection
from dicombox.plugins.worklist.tables import ensure_tables, worklist_items


def refresh(box: Box, args: argparse.Namespace) -> int:
    settings: WorklistSection = box.section("worklist")
    if not settings.ris:
        print("dicombox worklist refresh: no [worklist] ris configured", file=sys.stderr)
        return 2
    result = poll_and_report(box, settings)
    print(result.summary)
    for why in result.left_out:
        print(f"  left out: {why}")
    return 1 if result.error else 0


def _listed(box: Box, everything: bool) -> list[dict[str, Any]]:
    """The items, each with what its modalities reported (MPPS) and whether the MWL SCP
    answers it now; the keys are those of the table, in lower case, and more."""
    settings: WorklistSection = box.section("worklist")
    ensure_tables(box.index.engine)
    t = worklist_items
    statement = select(t).order_by(
        t.c.scheduled_procedure_step_start_date, t.c.scheduled_procedure_step_start_time
    )
    if not everything:
        statement = statement.where(t.c.state == SCHEDULED)
    with box.index.engine.connect() as conn:
        rows = conn.execute(statement).all()
        performed = performed_by_item(conn, [r.id for r in rows])
    items = []
    for r in rows:
        done = performed.get(r.id, Performed())
        items.append(
            {
                "date": r.scheduled_procedure_step_start_date,
                "time": r.scheduled_procedure_step_start_time,
                "mod": r.modality,
                "station": r.scheduled_station_ae_title,
                "patient": r.patient_name,
                "id": r.patient_id,
                "accession": r.accession_number,
                "procedure": r.requested_procedure_description,
                "from": r.source,
                "state": r.state,
                "study_uid": r.study_instance_uid,
                "requested_procedure_id": r.requested_procedure_id,
                "sps_id": r.scheduled_procedure_step_id,
                **done.as_dict(),
                "answered": r.state == SCHEDULED and answered(done, settings.answer_performed),
            }
        )
    return items


def show(box: Box, args: argparse.Namespace) -> int:
    items = _listed(box, args.all)
    if args.json:
        print(json.dumps(items, indent=1))
        return 0
    if not items:
        print("no worklist items")
        return 0
    columns = ["date", "time", "mod", "station", "patient", "id", "accession", "procedure"]
    columns += ["from", "state", "mpps"]
    cells = [[i[c] or "-" for c in columns] + [summary(i["series"])] for i in items]
    for row in cells:
        row[1] = row[1][:4]  # HHMM
    print(format_table(cells, [c.upper() for c in columns] + ["PERFORMED"]))
    return 0


def add(box: Box, args: argparse.Namespace) -> int:
    """A locally scheduled item, for a modality with no RIS behind the box."""
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.PatientName, item.PatientID = args.patient_name, args.patient_id
    item.PatientBirthDate, item.PatientSex = args.birth_date, args.sex
    item.AccessionNumber = args.accession
    item.ReferringPhysicianName = args.referring
    item.StudyInstanceUID = args.study_uid or generate_uid()
    item.RequestedProcedureID = args.procedure_id or args.accession or "1"
    item.RequestedProcedureDescription = args.description
    step = Dataset()
    step.Modality = args.modality
    step.ScheduledStationAETitle = args.station_ae or box.config.box.ae_title
    step.ScheduledProcedureStepStartDate = args.date or date.today().strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = args.time
    step.ScheduledProcedureStepID = args.sps_id or item.RequestedProcedureID
    step.ScheduledProcedureStepDescription = args.description
    step.ScheduledProcedureStepStatus = "SCHEDULED"
    item.ScheduledProcedureStepSequence = [step]
    ensure_tables(box.index.engine)
    save_items(box.index.engine, [item], "local")
    print(f"scheduled {args.patient_name} ({args.patient_id}), study {item.StudyInstanceUID}")
    return 0


def add_verb(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("worklist", help="the modality worklist: refresh, list, add")
    verbs = p.add_subparsers(dest="worklist_verb", required=True)
    verbs.add_parser("refresh", help="poll the RIS now").set_defaults(func=refresh)
    listing = verbs.add_parser(
        "list", help="the scheduled items, with the state their modalities reported (MPPS)"
    )
    listing.add_argument("--all", action="store_true", help="retired items too")
    listing.add_argument(
        "--json", action="store_true", help="as JSON, with the performed steps and series"
    )
    listing.set_defaults(func=show)
    new = verbs.add_parser("add", help="schedule a procedure step locally")
    new.add_argument("--patient-name", required=True, help="DICOM form: FAMILY^GIVEN")
    new.add_argument("--patient-id", required=True)
    new.add_argument("--modality", required=True)
    new.add_argument("--accession", default="")
    new.add_argument("--birth-date", default="", metavar="YYYYMMDD")
    new.add_argument("--sex", default="", choices=["", "M", "F", "O"])
    new.add_argument("--date", default="", metavar="YYYYMMDD", help="default: today")
    new.add_argument("--time", default="", metavar="HHMM")
    new.add_argument("--station-ae", default="", help="default: the box's AE title")
    new.add_argument("--description", default="")
    new.add_argument("--referring", default="", help="referring physician")
    new.add_argument("--procedure-id", default="")
    new.add_argument("--sps-id", default="")
    new.add_argument("--study-uid", default="")
    new.set_defaults(func=add)
