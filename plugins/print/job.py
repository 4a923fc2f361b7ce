"""The print job: films onto one printer, in the background, in order.

A job either lays out stored instances (``dicombox print``, a print route) or carries a
film a modality printed to the box's print SCP, spooled as a folder. Jobs of one
printer share a queue and run one at a time, oldest first: a job that failed (printer
offline, out of film) keeps its place and the queue waits for it, retried
``[print] retries`` times ``retry_delay_s`` apart, as the seeds' print managers do.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicombox.core.box import Box
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.hal.printer import PageJob, PrinterError
from dicombox.plugins.print import render
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film, ImageBox, load_film, save_film
from dicombox.plugins.print.printers import (
    UnknownPrinter,
    capabilities,
    find_printer,
    page_printer,
    print_settings,
)
from dicombox.plugins.print.scu import PrintError, print_films
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


def spool_film(box: Box, printer: PrinterSection, film: Film, caller: str) -> int:
    """Keep a film printed to the box until its job has put it on ``printer``."""
    folder = box.config.data_dir / "print" / "spool" / uuid.uuid4().hex
    save_film(film, folder)
    return queue_print(box, printer, {"spool": str(folder), "caller": caller})


def run_print(box: Box, job: Job, progress: JobContext) -> None:
    settings = print_settings(box)
    try:
        printer = find_printer(box, job.payload.get("printer", ""))
    except UnknownPrinter as exc:
        raise PermanentJobError(str(exc)) from None
    box.jobs.wait_for_older(job, f"print jobs on {printer.name}")
    spool = job.payload.get("spool")
    if spool:
        films = [load_film(Path(spool))]
    else:
        films = films_of_instances(box, settings, printer, job.payload)
    where = deliver(box, settings, printer, films, progress)
    if spool:
        shutil.rmtree(spool, ignore_errors=True)  # printed: the spooled copy has done its job
    box.bus.publish("print.done", printer=printer.name, films=len(films), job=job.id)
    progress(f"{len(films)} film(s) printed on {printer.name}{where}")


def deliver(
    box: Box,
    settings: PrintSection,
    printer: PrinterSection,
    films: list[Film],
    progress: JobContext,
) -> str:
    """Put ``films`` on ``printer``; returns a note on where they went."""
    if printer.driver == "dicom":
        remote = box.config.remote_named(printer.remote)
        if remote is None:
            raise PermanentJobError(f"printer {printer.name}: no [[remote]] {printer.remote!r}")
        if printer.send_as == "page":
            films = [_as_page(film, capabilities(box, printer)) for film in films]
        try:
            report = print_films(
                box.config, remote, films, capabilities(box, printer), settings.warning, progress
            )
        except PrintError as exc:
            box.bus.publish("print.failed", printer=printer.name, error=str(exc))
            raise (PermanentJobError if exc.permanent else TransientJobError)(str(exc)) from None
        warnings = report.warnings + report.events
        return f" ({'; '.join(warnings)})" if warnings else ""
    pages = [render.render_film(film, settings.dpi) for film in films]
    title = films[0].label or "film"
    try:
        where = page_printer(box, printer).print_pages(
            PageJob(pages, settings.dpi, films[0].copies, title)
        )
    except PrinterError as exc:
        box.bus.publish("print.failed", printer=printer.name, error=str(exc))
        raise TransientJobError(str(exc)) from None
    return f": {where}"


def _as_page(film: Film, caps: v.Capabilities) -> Film:
    """The film laid out by the box and sent as one STANDARD\\1,1 image (seeds 002/004)."""
    page = render.page_image_box(film, caps.dpi, bits=caps.bits if not film.color else 8)
    return dataclasses.replace(
        film, display_format=render.PAGE_FORMAT, annotations=[], images=[page]
    )


def films_of_instances(
    box: Box, settings: PrintSection, printer: PrinterSection, payload: dict[str, Any]
) -> list[Film]:
    """The stored instances the payload names, laid out film after film."""
    instances = box.index.instances_of(list(payload["items"]))
    if payload.get("key_images"):
        instances = _key_images(box, instances)
    layout = payload.get("layout") or printer.layout
    try:
        per_film = v.positions(layout)
    except ValueError as exc:
        raise PermanentJobError(f"layout {layout!r}: {exc}") from None
    datasets = [_image(box.store.path(path)) for _, path in instances]
    images = [ds for ds in datasets if ds is not None]
    if not images:
        raise PermanentJobError("nothing printable: no stored image among " + _items(payload))
    films = []
    for patient_images in _by_patient(images):
        for start in range(0, len(patient_images), per_film):
            chunk = patient_images[start : start + per_film]
            boxes = [
                render.image_box_from_dataset(
                    ds, n, bits=12 if printer.driver == "dicom" else 8, true_size=printer.true_size
                )
                for n, ds in enumerate(chunk, start=1)
            ]
            films.append(_film(printer, payload, layout, boxes, chunk[0], settings.annotate))
    return films


def _by_patient(images: list[Dataset]) -> list[list[Dataset]]:
    """The images grouped by patient, in order of first appearance: one film never shows
    two patients, whose images a reader could otherwise take for one's."""
    groups: dict[tuple[str, str], list[Dataset]] = {}
    for ds in images:
        key = (str(ds.get("PatientID", "") or ""), str(ds.get("PatientName", "") or ""))
        groups.setdefault(key, []).append(ds)
    return list(groups.values())


def _items(payload: dict[str, Any]) -> str:
    return ", ".join(payload["items"][:3])


def _image(path: Path) -> Dataset | None:
    """The instance at ``path`` when it has pixels to print (not an SR, a KOS …)."""
    try:
        ds = dcmread(path)
    except Exception as exc:  # a damaged file is left off the film, not the whole job
        log.warning("%s left off the film: %s", path.name, exc)
        return None
    return ds if "PixelData" in ds else None


def _key_images(box: Box, instances: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of ``instances`` a Key Object Selection among them references."""
    keys: set[str] = set()
    for _, path in instances:
        ds = dcmread(box.store.path(path), stop_before_pixels=True)
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
    )


def annotation_lines(ds: Dataset) -> list[str]:
    """What a film says of whose it is: patient, study date, institution."""
    name = str(ds.get("PatientName", "") or "").replace("^", " ").strip()
    patient = f"{name} ({ds.get('PatientID', '')})" if name else str(ds.get("PatientID", ""))
    date = str(ds.get("StudyDate", "") or "")
    if len(date) == 8:
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    lines = [patient, f"{date} {ds.get('StudyDescription', '') or ''}".strip()]
    lines.append(str(ds.get("InstitutionName", "") or ""))
    return [line for line in lines if line]
