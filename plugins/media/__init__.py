"""Media: studies onto CD/DVD/BD as DICOM file-sets (DICOMDIR, the profile's transfer
syntaxes, IHE PDI files), mastered in-process and burned in the background through the
burner HAL (a simulator writing ISO files, or xorriso for a real drive)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.core.jobs import RUNNING, Job, JobHandler
from dicombox.core.outbox import RouteJob
from dicombox.core.rules import routes_for_mpps_event, routes_for_stored
from dicombox.hal.burner import BurnerError
from dicombox.plugins.media.burn import BURN, burner_for, destination, queue_burn, run_burn
from dicombox.plugins.media.deidentify import LEVELS
from dicombox.plugins.media.fileset import PROFILES
from dicombox.plugins.media.importer import add_verb as add_import_verb
from dicombox.plugins.media.settings import MediaSection
from dicombox.plugins.media.usb import add_verb as add_export_verb

__version__ = "0.1.0"


def _settings(box: Box) -> MediaSection:
    return box.section("media")


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"media": MediaSection}


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    settings = _settings(box)
    return {BURN: lambda job, progress: run_burn(box, settings, job, progress)}


@hookimpl
def dicombox_route_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    """Routes with ``burn = true`` burn each study once it has been idle ``idle_s``."""
    routes = [r for r in box.config.route if r.burn]
    if not routes:
        return []
    path = box.store.path(instance.path)
    if not routes_for_stored(routes, instance.calling_ae, path, dataset):
        return []
    settings = _settings(box)
    return [
        RouteJob(
            BURN,
            instance.study_instance_uid,
            [],
            queue="burner",
            max_attempts=settings.retries + 1,
            retry_delay_s=10.0,
            delay_s=settings.idle_s,
            postpone=True,
        )
    ]


def _burn_completed(box: Box, event: Event) -> None:
    studies = routes_for_mpps_event(box, event, lambda r: bool(r.burn))
    if studies:
        queue_burn(box, _settings(box), list(studies))


@hookimpl
def dicombox_start(box: Box) -> None:
    box.bus.subscribe("mpps.completed", lambda event: _burn_completed(box, event))


def burn_command(box: Box, args: argparse.Namespace) -> int:
    settings = _settings(box)
    if args.profile and args.profile not in PROFILES:
        print(
            f"dicombox burn: unknown profile {args.profile!r}; use {', '.join(PROFILES)}",
            file=sys.stderr,
        )
        return 2
    job = queue_burn(
        box, settings, args.study, profile=args.profile, copies=args.copies,
        deidentify=args.deidentify,
    )  # fmt: skip
    print(
        f"burn queued as job {job}: the disc(s) go to {destination(box, settings)}; "
        "follow it with 'dicombox jobs'"
    )
    return 0


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("burn", help="burn studies to disc (a background job)")
    p.add_argument("study", nargs="+", metavar="STUDY_UID")
    p.add_argument("--profile", default="", help="STD-GEN-CD (default), STD-GEN-DVD-J2K …")
    p.add_argument("--copies", type=int, default=0)
    p.add_argument(
        "--deidentify", default="", choices=["", *LEVELS], help="default: [media] deidentify"
    )
    p.set_defaults(func=burn_command)
    add_import_verb(subparsers)
    add_export_verb(subparsers)


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, Any]]:
    return [
        {
            "service": "Media Storage",
            "sop_class": "Media Storage Directory Storage (DICOMDIR)",
            "uid": "1.2.840.10008.1.3.10",
            "role": "FSC",
            "transfer_syntaxes": list(PROFILES),
            "notes": "dicombox burn, export usb, burn routes; application profiles; IHE PDI",
        }
    ]


# The front panel: the burner's state, and burning or ejecting at the press of a key.


PANEL_MEDIA_S = 10.0  # a real drive spins up when asked: not at every refresh


@hookimpl
def dicombox_panel_screens(box: Box) -> list[PanelScreen]:
    asked: list[tuple[float, list[str]]] = []

    def render(columns: int, rows: int) -> list[str]:
        job = _running_burn(box)
        if job is not None:
            return ["Burner", f"burn job {job.id}", job.progress or "starting"]
        if not asked or time.monotonic() - asked[0][0] > PANEL_MEDIA_S:
            asked[:] = [(time.monotonic(), burner_lines(box))]
        return asked[0][1]

    return [PanelScreen("burner", render, order=60)]


@hookimpl
def dicombox_panel_actions(box: Box) -> list[PanelAction]:
    return [
        PanelAction("Burn last study", lambda: burn_last_study(box), order=10),
        PanelAction("Eject disc", lambda: eject_disc(box), order=30),
    ]


def _running_burn(box: Box) -> Job | None:
    return next((j for j in box.jobs.list(states=(RUNNING,), limit=50) if j.kind == BURN), None)


def burner_lines(box: Box) -> list[str]:
    """The drive's state for the panel. Not asked while a burn runs (a query in the
    middle of a burn can spoil the disc): the job's progress is shown then."""
    try:
        media = burner_for(box, _settings(box)).media()
    except BurnerError as exc:
        return ["Burner", str(exc)]
    if not media.present:
        return ["Burner", "no disc"]
    state = f"blank {media.kind}" if media.blank else f"{media.kind} not blank"
    return ["Burner", state, f"{media.capacity_bytes >> 20} MB free"]


def burn_last_study(box: Box) -> str:
    """Queue a burn of the study that received an image last."""
    studies = box.index.studies()
    if not studies:
        return "no study stored"
    study = studies[0]
    job = queue_burn(box, _settings(box), [study["study_instance_uid"]])
    patient = str(study.get("patient_name") or "").replace("^", " ").strip()
    return f"burn job {job} queued {patient}".strip()


def eject_disc(box: Box) -> str:
    if _running_burn(box) is not None:
        return "burning: eject when the job is done"
    try:
        burner_for(box, _settings(box)).eject()
    except BurnerError as exc:
        return f"eject failed: {exc}"
    return "disc ejected"
