"""``dicombox export usb STUDY…``: studies onto a USB stick as a DICOM file-set. A stick
that already holds a DICOMDIR gets the new studies added to it (File-set Updater)."""

from __future__ import annotations

import argparse
import sys

from dicombox.core.box import Box
from dicombox.core.jobs import PROBLEMS_EXIT
from dicombox.hal.registry import DriverContext
from dicombox.hal.removable import REMOVABLE, RemovableError, Sticks
from dicombox.plugins.media.burn import export_deidentifier, stored_instances
from dicombox.plugins.media.deidentify import LEVELS
from dicombox.plugins.media.fileset import MediaError, build_fileset
from dicombox.plugins.media.leftout import left_out_lines
from dicombox.plugins.media.settings import MediaSection


def sticks_for(box: Box, settings: MediaSection) -> Sticks:
    """The sticks as configured: found by udev, or the folders below ``usb_root``."""
    context = DriverContext(data_dir=box.config.data_dir)
    return REMOVABLE.open(settings.usb, settings.sticks_options(), context)


def export_command(box: Box, args: argparse.Namespace) -> int:
    settings: MediaSection = box.section("media")
    instances = stored_instances(box, args.study)
    if not instances:
        print(f"dicombox export usb: none of {', '.join(args.study)} is stored", file=sys.stderr)
        return 2
    sticks = sticks_for(box, settings)
    try:
        stick = sticks.get(args.stick)
        needed = sum(path.stat().st_size for _, path in instances)
        if needed > stick.free_bytes:
            raise RemovableError(
                f"the stick {stick.name!r} has {stick.free_bytes >> 20} MB free, "
                f"the studies need about {needed >> 20} MB"
            )
        report = build_fileset(
            [path for _, path in instances],
            stick.root,
            args.profile or settings.usb_profile,
            update=True,
            label={"institution": box.config.box.institution},
            deidentify=export_deidentifier(args.deidentify or settings.deidentify),
        )
        sticks.eject(stick)
    except (RemovableError, MediaError) as exc:
        print(f"dicombox export usb: {exc}", file=sys.stderr)
        return 1
    problems = left_out_lines(report.refused)
    for line in problems:  # one line each; why in detail is in the log
        print(line, file=sys.stderr)
    summary = f"{_instances(report.written)} written to the stick {stick.name!r} ({stick.root})"
    if report.already:
        summary += f"; {report.already} {'was' if report.already == 1 else 'were'} already there"
    if problems:
        summary += f"; {len(problems)} left out"
    print(summary + "; it can be pulled out")
    return PROBLEMS_EXIT if problems else 0


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


def add_verb(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export studies: 'export usb STUDY_UID…'")
    targets = p.add_subparsers(dest="export_target", required=True)
    usb = targets.add_parser("usb", help="onto a USB stick, as a DICOM file-set")
    usb.add_argument("study", nargs="+", metavar="STUDY_UID")
    usb.add_argument("--stick", default="", help="which stick, when several are plugged in")
    usb.add_argument("--profile", default="", help="default: [media] usb_profile")
    usb.add_argument(
        "--deidentify", default="", choices=["", *LEVELS], help="default: [media] deidentify"
    )
    usb.set_defaults(func=export_command)
