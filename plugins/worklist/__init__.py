"""Modality Worklist and MPPS: the box as worklist broker.

It polls the RIS for the worklist (MWL SCU) and serves that and locally scheduled items
to modalities (MWL SCP), corrects arriving instances from their worklist item
(coercion), and takes procedure step reports (MPPS SCP) that it passes on to the RIS
(MPPS SCU). The SCPs answer on the box's AE title or on ``[worklist] scp_ae_title``.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.coercion import Coercion
from dicombox.core.jobs import JobHandler
from dicombox.core.net.commands import C_FIND_RQ, N_CREATE_RQ, N_SET_RQ
from dicombox.core.net.service import Service, SupportedContext
from dicombox.plugins.worklist.cli import add_verb
from dicombox.plugins.worklist.coerce import coercion_for, find_item
from dicombox.plugins.worklist.mpps import (
    MPPS_FORWARD_JOB,
    MPPS_SOP_CLASS,
    MppsSCP,
    run_mpps_forward,
)
from dicombox.plugins.worklist.poll import MWL_FIND, last_poll, poll_and_report
from dicombox.plugins.worklist.scp import WorklistSCP
from dicombox.plugins.worklist.settings import WorklistSection
from dicombox.plugins.worklist.tables import ensure_tables

__version__ = "1.0.0"
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
log = logging.getLogger("dicombox.worklist")


def _settings(box: Box) -> WorklistSection:
    return box.section("worklist")


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"worklist": WorklistSection}


@hookimpl
def dicombox_local_ae_titles(box: Box) -> list[str]:
    ae = _settings(box).scp_ae_title
    return [ae] if ae else []


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings = _settings(box)
    ensure_tables(box.index.engine)
    qr_settings = box.config.extra.get("qr")
    case_insensitive = bool(getattr(qr_settings, "case_insensitive_names", False))
    mwl = WorklistSCP(box, case_insensitive, settings.answer_performed)
    mpps = MppsSCP(box, settings)
    titles = (settings.scp_ae_title,) if settings.scp_ae_title else ()
    return [
        Service(
            name="worklist",
            contexts=[SupportedContext(MWL_FIND, SYNTAXES)],
            handlers={C_FIND_RQ: mwl.handle},
            permissions={C_FIND_RQ: "worklist"},
            ae_titles=titles,
        ),
        Service(
            name="mpps",
            contexts=[SupportedContext(MPPS_SOP_CLASS, SYNTAXES)],
            handlers={N_CREATE_RQ: mpps.handle_create, N_SET_RQ: mpps.handle_set},
            permissions={N_CREATE_RQ: "mpps", N_SET_RQ: "mpps"},
            ae_titles=titles,
        ),
    ]


@hookimpl
def dicombox_coerce(box: Box, dataset: Any, context: dict[str, Any]) -> Coercion | None:
    coerce_by = _settings(box).coerce_by
    if not coerce_by:
        return None
    ensure_tables(box.index.engine)  # a CLI process (dicombox get) may not have them yet
    item = find_item(box, dataset, coerce_by)
    return coercion_for(item) if item is not None else None


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    settings = _settings(box)
    return {MPPS_FORWARD_JOB: lambda job, progress: run_mpps_forward(box, settings, job, progress)}


@hookimpl
def dicombox_start(box: Box) -> None:
    settings = _settings(box)
    if not settings.ris:
        return

    def loop() -> None:
        while True:
            try:
                poll_and_report(box, settings)
            except Exception:
                log.exception("worklist poll crashed")
            if stop.wait(settings.interval_s):
                return

    stop = threading.Event()
    _pollers.append(stop)
    threading.Thread(target=loop, name="worklist-poll", daemon=True).start()


_pollers: list[threading.Event] = []


@hookimpl
def dicombox_stop(box: Box) -> None:
    for stop in _pollers:
        stop.set()


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    add_verb(subparsers)


@hookimpl
def dicombox_status(box: Box) -> list[str]:
    if not _settings(box).ris:
        return []
    result = last_poll(box)
    return [f"worklist: {result.summary}" if result else "worklist: not polled yet"]


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, Any]]:
    syntaxes = [str(s) for s in SYNTAXES]
    return [
        {
            "service": "Modality Worklist",
            "sop_class": "Modality Worklist Information Model - FIND",
            "uid": MWL_FIND,
            "role": role,
            "transfer_syntaxes": syntaxes,
            "notes": notes,
        }
        for role, notes in (
            ("SCU", "broad query of the RIS every interval_s, cached"),
            ("SCP", "cached and local items, full matching"),
        )
    ] + [
        {
            "service": "MPPS",
            "sop_class": "Modality Performed Procedure Step",
            "uid": MPPS_SOP_CLASS,
            "role": role,
            "transfer_syntaxes": syntaxes,
            "notes": notes,
        }
        for role, notes in (("SCP", "PS3.4 F.7 state rules"), ("SCU", "forwarded to the RIS"))
    ]
