"""The print job: films onto one printer, in the background, in order.

A job either lays out stored instances (``dicombox print``, a print route) or carries a
film a modality printed to the box's print SCP, spooled as a folder. Jobs of one
printer share a queue and run one at a time, oldest first. A printer that needs an
operator (out of film, jammed, offline) stops its queue: the job waits, looking again
every ``retry_delay_s``, without using up its tries. Other failures (a lost
association, a busy printer) are retried ``[print] retries`` times from
``retry_delay_s`` on, backing off. Films already printed are not printed again.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicombox.core.box import Box
from dicombox.core.jobs import (
    Job,
    JobContext,
    JobNotReady,
    PermanentJobError,
    TransientJobError,
)
from dicombox.hal.printer import PageJob, PagePrinter, PrinterError
from dicombox.plugins.print import render
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film, ImageBox, load_film, save_film
from dicombox.plugins.print.film_printer import FilmPrinter
from dicombox.plugins.print.printers import (
    UnknownPrinter,
    capabilities,
    find_printer,
    print_settings,
    printer_device,
    takes_films,
)
from dicombox.plugins.print.scu import PrintError
from dicombox.plugins.print.settings import PrinterSection, PrintSection

log = logging.getLogger("dicombox.print")

PRINT = "print"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection Document


def queue_print(box: Box, printer: PrinterSection, payload: dict[str, Any]) -> int:
    """Queue a print job on ``printer``'s queue."""
    settings = print_settings(box)
    return box.jobs.enqueue(
        PRINT,
        {"printer": printer.name, **payload},
        queue=f"printer:{printer.name}",
        max_attempts=settings.retries + 1,
        retry_delay_s=settings.retry_delay_s,
    )


def spool_folder(box: Box) -> Path:
    return box.config.data_dir / "print" / "spool"


def spool_film(box: Box, printer: PrinterSection, film: Film, caller: str) -> int:
    """Keep a film printed to the box until its job has put it on ``printer``."""
    folder = spool_folder(box) / uuid.uuid4().hex
    try:
        save_film(film, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # the modality hears of the failure
        raise
    return queue_print(box, printer, {"spool": str(folder), "caller": caller})


def sweep_spool(box: Box) -> int:
    """Remove spooled films no job will print (a cancelled job's, one saved when the box
    stopped before queueing it); returns how many went."""
    folder = spool_folder(box)
    if not folder.is_dir():
        return 0
    jobs = box.jobs.list(states=("queued", "running", "failed"), limit=100_000)
    wanted = {str(j.payload.get("spool")) for j in jobs if j.kind == PRINT}
    gone = 0
    for film in folder.iterdir():
        if str(film) not in wanted:
            shutil.rmtree(film, ignore_errors=True)
            gone += 1
    return gone


def run_print(box: Box, job: Job, progress: JobContext) -> None:
    settings = print_settings(box)
    try:
        printer = find_printer(box, job.payload.get("printer", ""))
    except UnknownPrinter as exc:
        raise PermanentJobError(str(exc)) from None
    box.jobs.wait_for_older(job, f"print jobs on {printer.name}")
    spool = job.payload.get("spool")
    skipped: list[str] = []
    if spool:
        try:
            films = [load_film(Path(spool))]
        except (OSError, ValueError) as exc:
            raise PermanentJobError(f"the spooled film is unreadable: {exc}") from None
    else:
        films = films_of_instances(box, settings, printer, job.payload, skipped)
    done = int(job.payload.get("printed", 0))

    def printed(number: int) -> None:
        job.payload["printed"] = done + number
        box.jobs.checkpoint(job)  # a retry starts after the films already out

    where = deliver(box, settings, printer, films[done:], progress, printed)
    if spool:
        shutil.rmtree(spool, ignore_errors=True)  # printed: the spooled copy has done its job
    box.bus.publish(
        "print.done", printer=printer.name, films=len(films), job=job.id, studies=_studies(films)
    )
    summary = f"{len(films)} film(s) printed on {printer.name}{where}"
    if skipped:
        summary += f"; {len(skipped)} left out ({skipped[0]})"
        box.bus.publish("print.warning", printer=printer.name, job=job.id, left_out=skipped)
    progress(summary)


def deliver(
    box: Box,
    settings: PrintSection,
    printer: PrinterSection,
    films: list[Film],
    progress: JobContext,
    printed: Callable[[int], None] = lambda number: None,
) -> str:
    """Put ``films`` on ``printer`` (a film session, or a PDF, per patient and study);
    returns a note on where they went. ``printed(n)``: n films are out."""
    notes: list[str] = []
    out = 0
    for group in _sessions(films):
        try:
            notes.append(_deliver_group(box, settings, printer, group, progress,
                                        lambda n, base=out: printed(base + n)))  # fmt: skip
        except PrintError as exc:
            box.bus.publish(
                "print.failed", printer=printer.name, error=str(exc), studies=_studies(group)
            )
            if exc.stopped:  # the queue waits for an operator, tries are not used up
                raise JobNotReady(str(exc), settings.retry_delay_s) from None
            raise (PermanentJobError if exc.permanent else TransientJobError)(str(exc)) from None
        except PrinterError as exc:
            box.bus.publish(
                "print.failed", printer=printer.name, error=str(exc), studies=_studies(group)
            )
            raise JobNotReady(str(exc), settings.retry_delay_s) from None
        out += len(group)
    notes = [n for n in notes if n]
    return ": " + "; ".join(notes) if notes else ""


def _sessions(films: list[Film]) -> list[list[Film]]:
    """Consecutive films of one patient and study: one film session (or one PDF) each,
    so a session's label and a file's name belong to the films in it."""
    groups: list[list[Film]] = []
    for film in films:
        if groups and groups[-1][0].group == film.group:
            groups[-1].append(film)
        else:
            groups.append([film])
    return groups


def _deliver_group(
    box: Box,
    settings: PrintSection,
    printer: PrinterSection,
    films: list[Film],
    progress: JobContext,
    printed: Callable[[int], None],
) -> str:
    device = printer_device(box, printer)
    if isinstance(device, FilmPrinter):
        caps = capabilities(box, printer)
        if printer.send_as == "page":
            films = [_as_page(film, caps) for film in films]
        report = device.print_films(films, caps, settings.warning, progress, printed)
        return "; ".join(report.warnings + report.events)
    pages = [render.render_film(film, settings.dpi) for film in films]
    title = films[0].label or "film"
    where = cast(PagePrinter, device).print_pages(
        PageJob(pages, settings.dpi, films[0].copies, title)
    )
    printed(len(films))
    return where


def _as_page(film: Film, caps: v.Capabilities) -> Film:
    """The film laid out by the box and sent as one STANDARD\\1,1 image (seeds 002/004)."""
    page = render.page_image_box(film, caps.dpi, bits=caps.bits if not film.color else 8)
    return dataclasses.replace(
        film, display_format=render.PAGE_FORMAT, annotations=[], images=[page]
    )


def films_of_instances(
    box: Box,
    settings: PrintSection,
    printer: PrinterSection,
    payload: dict[str, Any],
    skipped: list[str],
) -> list[Film]:
    """The stored instances the payload names, laid out film after film: each frame an
    image, each film one patient's and one study's. What cannot be printed is named in
    ``skipped``."""
    instances = box.index.instances_of(list(dict.fromkeys(payload["items"])))
    if payload.get("key_images"):
        instances = _key_images(box, instances, skipped)
        if not instances:
            raise PermanentJobError(
                "no Key Object Selection of " + _items(payload) + " names a stored image"
            )
    layout = payload.get("layout") or printer.layout
    try:
        per_film = v.positions(layout)
    except ValueError as exc:
        raise PermanentJobError(f"layout {layout!r}: {exc}") from None
    caps = capabilities(box, printer)
    as_films = takes_films(box, printer)  # a film printer gets its 12 bits; pages get 8
    bits = caps.bits if as_films else 8
    headers = [h for _, path in instances if (h := _header(box.store.path(path), skipped))]
    films = []
    for group in _by_patient_and_study(headers):
        boxes = [b for header in group for b in _image_boxes(header, bits, printer, skipped)]
        for start in range(0, len(boxes), per_film):
            chunk = _uniform(boxes[start : start + per_film], caps, as_films, bits)
            for n, image in enumerate(chunk, start=1):
                image.position = n
            film = _film(printer, payload, layout, chunk, group[0], settings.annotate)
            if film.annotations and as_films and printer.send_as == "boxes":
                # A film printer gets no annotation box from the box: the patient's name
                # goes into the first image itself, so no film leaves unidentified.
                chunk[0].pixels = render.label_pixels(chunk[0], film.annotations)
            films.append(film)
    if not films:
        why = f" ({skipped[0]})" if skipped else ""
        raise PermanentJobError(f"nothing printable among {_items(payload)}{why}")
    return films


def _by_patient_and_study(headers: list[Dataset]) -> list[list[Dataset]]:
    """The headers grouped by patient and study, in order of first appearance: a film
    never shows two patients, whose images a reader could take for one's, nor two
    studies under one study's date."""
    groups: dict[tuple[str, str, str], list[Dataset]] = {}
    for ds in headers:
        groups.setdefault(_group_key(ds), []).append(ds)
    return list(groups.values())


def _studies(films: list[Film]) -> list[str]:
    """The Study Instance UIDs of stored images on ``films`` (the last part of their
    group key), for the audit trail; films a modality printed to the box have none."""
    keys = [f.group.split("|") for f in films if f.group]
    return list(dict.fromkeys(key[2] for key in keys if len(key) == 3 and key[2]))


def _group_key(ds: Dataset) -> tuple[str, str, str]:
    return (
        str(ds.get("PatientID", "") or ""),
        str(ds.get("PatientName", "") or ""),
        str(ds.get("StudyInstanceUID", "") or ""),
    )


def _items(payload: dict[str, Any]) -> str:
    return ", ".join(payload["items"][:3])


def _header(path: Path, skipped: list[str]) -> Dataset | None:
    """The header of the instance at ``path`` when it has pixels to print (not an SR, a
    KOS …); its path kept for reading the pixels later, one instance at a time."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # a damaged file is left off the film, not the whole job
        skipped.append(f"{path.name}: unreadable ({exc})")
        log.warning("%s left off the film: %s", path.name, exc)
        return None
    if "Rows" not in ds:
        return None  # no image: a report, a key object; nothing to print, nothing to say
    ds.filename = str(path)
    return ds


def _image_boxes(
    header: Dataset, bits: int, printer: PrinterSection, skipped: list[str]
) -> list[ImageBox]:
    """One image box per frame of the instance (its pixels read now)."""
    uid = str(header.get("SOPInstanceUID", "")) or str(header.filename)
    try:
        ds = dcmread(header.filename)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return [
            render.image_box_from_dataset(ds, 1, frame=f, bits=bits, true_size=printer.true_size)
            for f in range(frames)
        ]
    except Exception as exc:  # a syntax without decoder, a photometric it cannot print
        skipped.append(f"{uid}: {exc}")
        log.warning("instance %s left off the film: %s", uid, exc)
        return []


def _uniform(
    boxes: list[ImageBox], caps: v.Capabilities, as_films: bool, bits: int
) -> list[ImageBox]:
    """The film's boxes all grey or all colour: a film box holds one kind of image box.
    Colour wins where the printer prints colour; else colour images print as grey."""
    if not any(b.color for b in boxes):
        return boxes
    if caps.color or not as_films:
        return [render.as_color(b) for b in boxes]
    return [render.as_grey(b, bits) for b in boxes]


def _key_images(
    box: Box, instances: list[tuple[str, str]], skipped: list[str]
) -> list[tuple[str, str]]:
    """Those of ``instances`` a Key Object Selection among them references."""
    keys: set[str] = set()
    for uid, path in instances:
        try:
            ds = dcmread(box.store.path(path), stop_before_pixels=True)
        except Exception as exc:  # a damaged file is one key object less, not the job
            skipped.append(f"{uid}: unreadable ({exc})")
            continue
        if str(ds.get("SOPClassUID", "")) != KOS_CLASS:
            continue
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
            for series in study.get("ReferencedSeriesSequence", []):
                for ref in series.get("ReferencedSOPSequence", []):
                    keys.add(str(ref.ReferencedSOPInstanceUID))
    return [(uid, path) for uid, path in instances if uid in keys]


def _film(
    printer: PrinterSection,
    payload: dict[str, Any],
    layout: str,
    boxes: list[ImageBox],
    first: Dataset,
    annotate: bool,
) -> Film:
    return Film(
        display_format=layout,
        film_size=payload.get("film") or printer.film_size,
        orientation=printer.orientation,
        magnification=printer.magnification,
        border_density=printer.border_density,
        empty_image_density=printer.empty_image_density,
        min_density=printer.min_density,
        max_density=printer.max_density,
        trim=printer.trim,
        presentation_lut_shape=printer.presentation_lut,
        copies=int(payload.get("copies") or printer.copies),
        priority=printer.priority,
        medium=printer.medium,
        destination=printer.destination,
        label=str(first.get("AccessionNumber", "") or first.get("StudyID", "") or ""),
        annotations=annotation_lines(first) if annotate else [],
        images=boxes,
        group="|".join(_group_key(first)),
    )


def annotation_lines(ds: Dataset) -> list[str]:
    """What a film says of whose it is: patient, study date, institution."""
    person = ds.get("PatientName")
    # The alphabetic group's family and given names: the ideographic and phonetic
    # groups would print as "?" in the films' ASCII font.
    name = " ".join(p for p in (person.family_name, person.given_name) if p) if person else ""
    patient = f"{name} ({ds.get('PatientID', '')})" if name else str(ds.get("PatientID", ""))
    date = str(ds.get("StudyDate", "") or "")
    if len(date) == 8:
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    lines = [patient, f"{date} {ds.get('StudyDescription', '') or ''}".strip()]
    lines.append(str(ds.get("InstitutionName", "") or ""))
    return [line for line in lines if line]
