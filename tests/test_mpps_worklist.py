"""What a modality reports of a worklist item (MPPS, pynetdicom as the modality) shows
in ``dicombox worklist list``, the REST API and the console's worklist page, and a
COMPLETED or DISCONTINUED item leaves the worklist findscu -W gets, unless [worklist]
answer_performed keeps it there."""

from __future__ import annotations

import json
import sqlite3

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association

from dicombox.core.config import ConfigError
from dicombox.plugins.web.verbs import parse_table
from dicombox.plugins.worklist.settings import WorklistSection
from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.webconsole import add_user, signed_in, web_config, web_url
from tests.test_worklist import TODAY, find_worklist

MPPS = "1.2.840.10008.3.1.2.3.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def schedule(box: RunningBox, name: str, accession: str) -> str:
    """A local item (``dicombox worklist add``); returns its Study Instance UID."""
    study = generate_uid()
    added = box.cli(
        "worklist", "add", "--patient-name", name, "--patient-id", f"ID-{accession}",
        "--modality", "CT", "--accession", accession, "--procedure-id", f"RP-{accession}",
        "--sps-id", f"SPS-{accession}", "--study-uid", study, "--description", "CT CHEST",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return study


def modality(box: RunningBox) -> Association:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established
    return assoc


def start_step(assoc: Association, scheduled: Dataset) -> str:
    """N-CREATE an IN PROGRESS step for one scheduled step; returns its SOP Instance UID."""
    ds = Dataset()
    ds.PatientName, ds.PatientID = "ANY^NAME", "ANY"
    ds.ScheduledStepAttributesSequence = [scheduled]
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "MODALITY"
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = TODAY, "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    uid = generate_uid()
    status, _ = assoc.send_n_create(ds, MPPS, uid)
    assert status.Status == 0x0000
    return uid


def end_step(assoc: Association, uid: str, status: str, series: list[tuple[str, str, int]]) -> None:
    """N-SET the step final, with the series (UID, description, images) it performed."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = TODAY, "103000"
    performed = []
    for series_uid, description, images in series:
        item = Dataset()
        item.SeriesInstanceUID, item.SeriesDescription = series_uid, description
        item.PerformingPhysicianName, item.ProtocolName, item.OperatorsName = "", "CHEST", ""
        item.RetrieveAETitle = ""
        refs = []
        for _ in range(images):
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT_IMAGE, generate_uid()
            refs.append(ref)
        item.ReferencedImageSequence = refs
        performed.append(item)
    ds.PerformedSeriesSequence = performed
    answer, _ = assoc.send_n_set(ds, MPPS, uid)
    assert answer.Status == 0x0000


def scheduled_step(study: str, accession: str = "", rp_id: str = "", sps_id: str = "") -> Dataset:
    item = Dataset()
    item.StudyInstanceUID, item.AccessionNumber = study, accession
    item.RequestedProcedureID, item.ScheduledProcedureStepID = rp_id, sps_id
    return item


def listing(box: RunningBox) -> dict[str, dict[str, str]]:
    """``dicombox worklist list``, by accession number."""
    shown = box.cli("worklist", "list")
    assert shown.returncode == 0, shown.stderr
    return {row["ACCESSION"]: row for row in parse_table(shown.stdout)}


def found(box: RunningBox) -> list[str]:
    answers, _ = find_worklist(box, ["AccessionNumber", "PatientName"])
    return sorted(str(a.AccessionNumber) for a in answers)


def test_mpps_state_shows_everywhere_and_final_items_leave_the_worklist(make_box):
    require("findscu")
    box = make_box(web_config())
    add_user(box, "vera", "viewer")
    viewer = signed_in(web_url(box), "vera")
    done_study = schedule(box, "DONE^DORA", "ACC-A")
    schedule(box, "STOP^STAN", "ACC-B")
    schedule(box, "WAIT^WILMA", "ACC-C")
    assert found(box) == ["ACC-A", "ACC-B", "ACC-C"]

    assoc = modality(box)
    # A: the modality names the step fully; B: only the accession, with a study UID of
    # its own making.
    a = start_step(assoc, scheduled_step(done_study, "ACC-A", "RP-ACC-A", "SPS-ACC-A"))
    b = start_step(assoc, scheduled_step(generate_uid(), "ACC-B"))
    rows = listing(box)
    assert [rows[k]["MPPS"] for k in ("ACC-A", "ACC-B", "ACC-C")] == [
        "IN PROGRESS",
        "IN PROGRESS",
        "-",
    ]
    assert found(box) == ["ACC-A", "ACC-B", "ACC-C"]  # in progress: still answered

    series_a1, series_a2, series_b = generate_uid(), generate_uid(), generate_uid()
    end_step(assoc, a, "COMPLETED", [(series_a1, "AXIAL 1MM", 3), (series_a2, "SCOUT", 1)])
    end_step(assoc, b, "DISCONTINUED", [(series_b, "ABORTED RUN", 2)])
    assoc.release()

    rows = listing(box)
    assert (rows["ACC-A"]["STATE"], rows["ACC-A"]["MPPS"]) == ("scheduled", "COMPLETED")
    assert rows["ACC-A"]["PERFORMED"] == "2 series, 4 images"
    assert (rows["ACC-B"]["MPPS"], rows["ACC-B"]["PERFORMED"]) == (
        "DISCONTINUED",
        "1 series, 2 images",
    )
    assert (rows["ACC-C"]["MPPS"], rows["ACC-C"]["PERFORMED"]) == ("-", "-")

    items = {i["accession"]: i for i in json.loads(box.cli("worklist", "list", "--json").stdout)}
    assert [s["uid"] for s in items["ACC-A"]["series"]] == [series_a1, series_a2]
    assert [(s["uid"], s["images"]) for s in items["ACC-B"]["series"]] == [(series_b, 2)]
    assert [(p["uid"], p["status"]) for p in items["ACC-A"]["performed_steps"]] == [
        (a, "COMPLETED")
    ]

    api = {i["accession"]: i for i in viewer.get("/api/worklist").json()}
    assert (api["ACC-A"]["mpps"], api["ACC-A"]["answered"]) == ("COMPLETED", False)
    assert [s["description"] for s in api["ACC-A"]["series"]] == ["AXIAL 1MM", "SCOUT"]
    assert (api["ACC-B"]["mpps"], api["ACC-B"]["answered"]) == ("DISCONTINUED", False)
    assert (api["ACC-C"]["mpps"], api["ACC-C"]["answered"], api["ACC-C"]["series"]) == (
        "",
        True,
        [],
    )
    assert api["ACC-A"]["patient"] == "DONE^DORA" and api["ACC-A"]["state"] == "scheduled"

    page = viewer.get("/worklist")
    assert page.status_code == 200
    html = page.text
    assert "COMPLETED" in html and "DISCONTINUED" in html
    assert f'title="{series_a1}">AXIAL 1MM' in html and "(3 images)" in html
    assert html.count("no longer offered to modalities") == 2

    assert found(box) == ["ACC-C"]

    # answer_performed keeps the states it names on the worklist: a discontinued step
    # may be done again. The steps' ties to their items, dropped here as on a box that
    # received them before it kept those ties, are made anew from the steps at start.
    box.stop()
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        db.execute("drop table mpps_steps")
    box.config.write_text(web_config() + '[worklist]\nanswer_performed = ["discontinued"]\n')
    box.start()
    assert found(box) == ["ACC-B", "ACC-C"]
    rows = listing(box)
    assert (rows["ACC-A"]["MPPS"], rows["ACC-B"]["MPPS"]) == ("COMPLETED", "DISCONTINUED")


def test_answer_performed_takes_only_final_states():
    with pytest.raises(ConfigError, match="answer_performed has 'done'; use completed"):
        WorklistSection(answer_performed=["done"]).validate("worklist")
    WorklistSection(answer_performed=["completed", "discontinued"]).validate("worklist")
