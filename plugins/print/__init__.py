"""Print: films onto DICOM film printers, paper or PDF, and a print server for modalities.

As print SCU the box lays out stored images on films (``render``) and prints them on a
``[[printer]]``: a DICOM film printer (``scu``), a CUPS paper printer or PDF/PNG files
(``hal.printer``). As print SCP (``scp``) it takes Basic Grayscale and Color Print
Management from modalities and puts each film they print on ``[print] scp_printer``.
Every film goes through a job per printer (``job``), so nothing printed is lost to a
printer that is offline or out of film.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.core.jobs import JobHandler
from dicombox.core.net.service import Peer, Service
from dicombox.core.outbox import RouteJob, gather_now
from dicombox.core.rules import routes_for_mpps_event, routes_for_stored
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film
from dicombox.plugins.print.job import PRINT, queue_print, run_print, spool_film, sweep_spool
from dicombox.plugins.print.printers import (
    UnknownPrinter,
    capabilities,
    configured_printers,
    find_printer,
    print_settings,
    printer_state,
)
from dicombox.plugins.print.scp import PrintSCP
from dicombox.plugins.print.settings import PrinterSection, PrinterTemplateSection, PrintSection

__version__ = "1.0.0"
log = logging.getLogger("dicombox.print")
SCP_STATE_S = 15.0  # how old the printer state a modality's N-GET Printer gets may be


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {
        "print": PrintSection,
        "printer": PrinterSection,
        "printer_template": PrinterTemplateSection,
    }


@hookimpl
def dicombox_local_ae_titles(box: Box) -> list[str]:
    ae = print_settings(box).scp_ae_title
    return [ae] if ae else []


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings = print_settings(box)
    if not settings.scp:
        return []
    try:
        printer = find_printer(box, settings.scp_printer)
        caps = capabilities(box, printer)
    except UnknownPrinter as exc:  # the print server is off; storage and the rest go on
        log.error("print server off: [print] scp_printer: %s", exc)
        return []

    def submit(film: Film, peer: Peer) -> None:
        job = spool_film(box, printer, film, peer.calling_ae)
        log.info("film from %s queued on %s as job %s", peer.calling_ae, printer.name, job)

    def status() -> tuple[str, str, dict[str, str]]:
        state = printer_state(box, printer, max_age_s=SCP_STATE_S)
        return state.status, state.info, {"PrinterName": printer.name}

    # Warnings (a density beyond the printer's range …) are not refused: the printer
    # uses its own value. Colour-by-pixel image boxes are taken: seeds 002/004 send them.
    scp = PrintSCP(
        submit=submit,
        printer_status=status,
        annotations=_sender_line if settings.annotate else None,
        check_film_session=lambda ds: _refusals(v.check_film_session(ds, caps)),
        check_film_box=lambda ds: _refusals(v.check_film_box(ds, caps)),
        check_image_box=lambda ds, color, n: _refusals(
            v.check_image_box(ds, color, n, capabilities=caps, allow_planar_0=True)
        ),
    )
    titles = (settings.scp_ae_title,) if settings.scp_ae_title else ()
    return scp.services(titles)


def _sender_line(peer: Peer) -> list[str]:
    """What a film printed to the box says of where it came from."""
    return [f"printed by {peer.calling_ae} {time.strftime('%Y-%m-%d %H:%M')}"]


def _refusals(problems: list[v.Problem]) -> list[str]:
    return [p.message for p in problems if not p.is_warning]


@hookimpl
def dicombox_render_image(box: Box, dataset: Any, frame: int) -> Any:
    """Thumbnails and previews windowed exactly as films are printed."""
    from dicombox.plugins.print.render import image_box_from_dataset

    return image_box_from_dataset(dataset, 1, frame=frame, bits=8).pixels


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    return {PRINT: lambda job, progress: run_print(box, job, progress)}


@hookimpl
def dicombox_route_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    """Routes with ``print = "<printer>"`` print each study once it has been idle."""
    routes = [r for r in box.config.route if r.print]
    if not routes:
        return []
    path = box.store.path(instance.path)
    idle_s = print_settings(box).idle_s
    jobs = []
    for route in routes_for_stored(routes, instance.calling_ae, path, dataset):
        job = _print_job(box, route.print, instance.study_instance_uid, route.print_key_images,
                         idle_s)  # fmt: skip
        if job is not None:
            jobs.append(job)
    return jobs


def _print_job(
    box: Box, printer_name: str, study: str, key_images: bool, delay_s: float
) -> RouteJob | None:
    """The study for the print job still queued for this printer, or a new one; None
    (logged) for a printer the configuration no longer has."""
    try:
        printer = find_printer(box, printer_name)
    except UnknownPrinter as exc:
        log.error("print route: %s", exc)
        return None
    settings = print_settings(box)
    return RouteJob(
        PRINT,
        f"{printer.name} {study}",
        [study],
        queue=f"printer:{printer.name}",
        max_attempts=settings.retries + 1,
        retry_delay_s=settings.retry_delay_s,
        delay_s=delay_s,
        postpone=True,
        extra={"printer": printer.name, "key_images": key_images},
    )


def _print_completed(box: Box, event: Event) -> None:
    studies = routes_for_mpps_event(box, event, lambda r: bool(r.print))
    for study, routes in studies.items():
        for route in routes:
            job = _print_job(box, route.print, study, route.print_key_images, 0.0)
            if job is not None:
                gather_now(box.jobs, job)


@hookimpl
def dicombox_start(box: Box) -> None:
    box.bus.subscribe("mpps.completed", lambda event: _print_completed(box, event))
    gone = sweep_spool(box)
    if gone:
        log.info("%d spooled film(s) no job will print removed", gone)


@hookimpl
def dicombox_status(box: Box) -> list[str]:
    lines = []
    for printer in configured_printers(box):
        condition = printer_state(box, printer)
        lines.append(f"printer {printer.name} ({printer.driver}): {_state_text(condition)}")
    return lines


def _state_text(condition: v.PrinterCondition) -> str:
    """NORMAL, or e.g. "FAILURE (PRINTER OFFLINE): Camera off-line." """
    if condition.status == "NORMAL" and condition.info in ("", "NORMAL"):
        return "NORMAL"
    return f"{condition.status} ({condition.info}): {condition.text}"


def layout_of(text: str) -> str:
    """``2x3`` (columns x rows) as STANDARD\\2,3; an Image Display Format as it is."""
    match = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", text.strip())
    return f"STANDARD\\{match[1]},{match[2]}" if match else text.strip()


def print_command(box: Box, args: argparse.Namespace) -> int:
    try:
        printer = find_printer(box, args.printer)
        layout = layout_of(args.layout) if args.layout else ""
        if layout:
            v.positions(layout)
    except (UnknownPrinter, ValueError) as exc:
        print(f"dicombox print: {exc}", file=sys.stderr)
        return 2
    if args.film and args.film not in v.FILM_SIZES:
        print(f"dicombox print: film size {args.film!r}: one of {', '.join(v.FILM_SIZES)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.copies and not 1 <= args.copies <= 99:
        print(f"dicombox print: --copies {args.copies}: 1 to 99", file=sys.stderr)
        return 2
    if not box.index.instances_of(args.uid):
        print(f"dicombox print: none of {', '.join(args.uid)} is stored", file=sys.stderr)
        return 2
    payload = {"items": args.uid, "layout": layout, "film": args.film, "copies": args.copies,
               "key_images": args.key_images}  # fmt: skip
    job = queue_print(box, printer, payload)
    print(f"print queued on {printer.name} as job {job}; follow it with 'dicombox jobs'")
    return 0


def printers_command(box: Box, args: argparse.Namespace) -> int:
    for printer in configured_printers(box):
        target = printer.remote or printer.queue or printer.folder or "(data folder)"
        condition = printer_state(box, printer)
        print(f"{printer.name:<12} {printer.driver:<6} {target:<24} {_state_text(condition)}")
    return 0


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("print", help="print studies, series or images (a background job)")
    p.add_argument("uid", nargs="+", metavar="UID", help="a study, series or SOP instance UID")
    p.add_argument("--printer", default="", help="a [[printer]] name (default: [print])")
    p.add_argument("--layout", default="", help="2x3 (columns x rows) or STANDARD\\2,3, ROW\\…")
    p.add_argument("--film", default="", help="film size, e.g. 14INX17IN")
    p.add_argument("--copies", type=int, default=0)
    p.add_argument("--key-images", action="store_true", help="only the key images of a study")
    p.set_defaults(func=print_command)
    s = subparsers.add_parser("printers", help="list the printers and their state")
    s.set_defaults(func=printers_command)


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, Any]]:
    rows = []
    syntaxes = {"SCU": ["Implicit VR Little Endian"],
                "SCP": ["Explicit VR Little Endian", "Implicit VR Little Endian"]}  # fmt: skip
    for meta, name, image_box in (
        (v.BASIC_GRAYSCALE_PRINT_META, "Basic Grayscale Print Management Meta",
         f"Basic Grayscale Image Box {v.BASIC_GRAYSCALE_IMAGE_BOX}"),
        (v.BASIC_COLOR_PRINT_META, "Basic Color Print Management Meta",
         f"Basic Color Image Box {v.BASIC_COLOR_IMAGE_BOX}"),
    ):  # fmt: skip
        notes = (f"Basic Film Session {v.BASIC_FILM_SESSION}, Basic Film Box "
                 f"{v.BASIC_FILM_BOX}, {image_box}, Printer {v.PRINTER} "
                 f"(instance {v.PRINTER_INSTANCE})")  # fmt: skip
        for role, use in (("SCU", "dicombox print, print routes"), ("SCP", "the print server")):
            rows.append({"service": "Print", "sop_class": name, "uid": meta, "role": role,
                         "transfer_syntaxes": syntaxes[role],
                         "notes": f"{use}; {notes}"})  # fmt: skip
    rows.append({"service": "Print", "sop_class": "Presentation LUT", "uid": v.PRESENTATION_LUT,
                 "role": "SCU/SCP", "transfer_syntaxes": ["Implicit VR Little Endian"],
                 "notes": "IDENTITY, LIN OD"})  # fmt: skip
    return rows


# The front panel: the printers' state, and printing at the press of a key.


PANEL_STATE_S = 10.0  # a DICOM printer is asked over the network: not at every refresh


@hookimpl
def dicombox_panel_screens(box: Box) -> list[PanelScreen]:
    return [PanelScreen("printer", printer_lines(box), order=70)]


@hookimpl
def dicombox_panel_actions(box: Box) -> list[PanelAction]:
    return [PanelAction("Print last study", lambda: print_last_study(box), order=20)]


def printer_lines(box: Box) -> Callable[[int, int], list[str]]:
    """A renderer of each printer's name and condition (its 20-character LCD text),
    asking each printer at most every ``PANEL_STATE_S``."""

    def render(columns: int, rows: int) -> list[str]:
        # A printer busy with a job is not asked: many film printers take one
        # association at a time, and the job's own would have to wait for ours.
        busy = {j.queue for j in box.jobs.list(states=("running",), limit=50)}
        lines = []
        for printer in configured_printers(box):
            if f"printer:{printer.name}" in busy:
                lcd = "printing"
            else:
                lcd = printer_state(box, printer, max_age_s=PANEL_STATE_S).lcd
            lines += [f"Printer {printer.name}", lcd]
        return lines[:rows]

    return render


def print_last_study(box: Box) -> str:
    """Queue a print of the study that received an image last, on the default printer
    with its default layout."""
    studies = box.index.studies()
    if not studies:
        return "no study stored"
    try:
        printer = find_printer(box)
    except UnknownPrinter as exc:
        return str(exc)
    payload = {"items": [studies[0]["study_instance_uid"]], "layout": "", "film": "",
               "copies": 0, "key_images": False}  # fmt: skip
    job = queue_print(box, printer, payload)
    return f"print job {job} queued on {printer.name}"
