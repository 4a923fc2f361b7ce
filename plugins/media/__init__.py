"""Media: studies onto CD/DVD/BD as DICOM file-sets (DICOMDIR, the profile's transfer
syntaxes, IHE PDI files), mastered in-process and burned in the background through the
burner HAL (a simulator writing ISO files, or xorriso for a real drive)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.jobs import JobHandler
from dicombox.core.rules import routes_for_mpps_event, routes_for_stored
from dicombox.plugins.media.burn import BURN, queue_burn, run_burn
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
def dicombox_on_stored(box: Box, instance: Any, dataset: Any) -> None:
    """Routes with ``burn = true`` burn each study once it has been idle ``idle_s``."""
    routes = [r for r in box.config.route if r.burn]
    path = box.store.path(instance.path)
    if routes_for_stored(routes, instance.calling_ae, path, dataset):
        settings = _settings(box)
        box.jobs.gather(
            BURN,
            instance.study_instance_uid,
            [],
            queue="burner",
            max_attempts=settings.retries + 1,
            retry_delay_s=10.0,
            delay_s=settings.idle_s,
            postpone=True,
        )


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
    print(f"burn queued as job {job}; follow it with 'dicombox jobs'")
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
            "notes": "application profiles; IHE PDI",
        }
    ]
