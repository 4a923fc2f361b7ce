"""The print SCU: films onto a DICOM film printer, one association per job.

The order is the seeds' (seed 000 §5.1, seed 004 B5): N-GET Printer for its status
first, N-CREATE Film Session, an optional N-CREATE Presentation LUT, then per film
N-CREATE Film Box, N-SET Image Box for each occupied position, N-ACTION print and
N-DELETE Film Box; N-DELETE Film Session and release at the end. Everything goes in
Implicit VR Little Endian, the one syntax every film printer takes. Each answer's
status is judged by ``vocabulary.outcome``: CONTINUE and WARN go on (warnings are
reported), RETRY gives up this attempt (the job runs again later), FAIL refuses the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, evt
from pynetdicom.association import Association

from dicombox.core.config import Config, RemoteSection
from dicombox.core.net.requestor import network_for, requestor_ae, tls_args_for
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film, ImageBox

log = logging.getLogger("dicombox.print")

PRINT_ACTION = 1  # Action Type ID of "print" (PS3.4 H.4.1.2.4, H.4.2.2.4)


class PrintError(Exception):
    """The job cannot go on now. ``permanent``: trying again will not help (a value
    the printer refuses). ``stopped``: the printer needs an operator (out of film,
    jammed, offline) and its queue waits without using up retries. Else the job is
    retried (busy, a lost association)."""

    def __init__(self, message: str, permanent: bool = False, stopped: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.stopped = stopped


@dataclass
class PrintReport:
    films: int = 0
    warnings: list[str] = field(default_factory=list)
    printer: v.PrinterCondition | None = None
    events: list[str] = field(default_factory=list)  # N-EVENT-REPORTs the printer sent


def meta_class(color: bool) -> str:
    return v.BASIC_COLOR_PRINT_META if color else v.BASIC_GRAYSCALE_PRINT_META


class PrintSession:
    """One association with a film printer, and the checks of every answer."""

    def __init__(self, assoc: Association, color: bool, report: PrintReport) -> None:
        self.assoc = assoc
        self.meta = meta_class(color)
        self.color = color
        self.report = report
        self._message_id = 0

    def _next_id(self) -> int:
        self._message_id += 1
        return self._message_id

    def check(self, what: str, status: Dataset | None) -> None:
        """Judge the answer to ``what``; raise PrintError unless the job may go on."""
        if status is None or "Status" not in status:
            raise PrintError(f"the printer did not answer the {what}")
        code = int(status.Status)
        verdict, meaning = v.outcome(code)
        comment = str(status.get("ErrorComment", "") or "")
        text = f"{what}: 0x{code:04X} {meaning}" + (f" ({comment})" if comment else "")
        if verdict is v.Outcome.CONTINUE:
            return
        if verdict is v.Outcome.WARN:
            log.warning("printer warning on %s", text)
            self.report.warnings.append(text)
            return
        raise PrintError(text, permanent=verdict is v.Outcome.FAIL)

    def printer_state(self) -> v.PrinterCondition:
        status, attrs = self.assoc.send_n_get(
            [],  # all of them: printers refuse attributes they lack (0105)
            v.PRINTER,
            v.PRINTER_INSTANCE,
            msg_id=self._next_id(),
            meta_uid=self.meta,
        )
        self.check("N-GET Printer", status)
        attrs = attrs or Dataset()
        return v.describe_printer(
            str(attrs.get("PrinterStatus", "") or "NORMAL"),
            str(attrs.get("PrinterStatusInfo", "") or "NORMAL"),
        )

    def create(
        self, what: str, sop_class: str, ds: Dataset, on_meta: bool = True
    ) -> tuple[str, Dataset]:
        """N-CREATE; ``on_meta``: on the Print Management Meta context (a Presentation
        LUT is a SOP class of its own, negotiated on its own context)."""
        # The SCU names the instance (PS3.4 H.4.1.2.1.1 allows it): pynetdicom does not
        # hand back the Affected SOP Instance UID a printer would assign.
        uid = str(generate_uid())
        meta = self.meta if on_meta else None
        status, created = self.assoc.send_n_create(
            ds, sop_class, uid, msg_id=self._next_id(), meta_uid=meta
        )
        self.check(f"N-CREATE {what}", status)
        return uid, created or Dataset()

    def accepted(self, sop_class: str) -> bool:
        return any(cx.abstract_syntax == sop_class for cx in self.assoc.accepted_contexts)

    def set(self, what: str, sop_class: str, uid: str, ds: Dataset) -> None:
        status, _ = self.assoc.send_n_set(
            ds, sop_class, uid, msg_id=self._next_id(), meta_uid=self.meta
        )
        self.check(f"N-SET {what}", status)

    def action(self, what: str, sop_class: str, uid: str) -> None:
        status, _ = self.assoc.send_n_action(
            None, PRINT_ACTION, sop_class, uid, msg_id=self._next_id(), meta_uid=self.meta
        )
        self.check(f"N-ACTION print {what}", status)

    def delete(self, what: str, sop_class: str, uid: str) -> None:
        status = self.assoc.send_n_delete(
            sop_class, uid, msg_id=self._next_id(), meta_uid=self.meta
        )
        self.check(f"N-DELETE {what}", status)


def film_session_request(film: Film) -> Dataset:
    ds = Dataset()
    ds.NumberOfCopies = film.copies
    ds.PrintPriority = film.priority
    if film.medium:
        ds.MediumType = film.medium
    if film.destination:
        ds.FilmDestination = film.destination
    if film.label:
        ds.FilmSessionLabel = film.label[:64]
    return ds


def film_box_request(film: Film, session_uid: str, lut_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.ImageDisplayFormat = film.display_format
    ds.FilmOrientation = film.orientation
    ds.FilmSizeID = film.film_size
    if film.magnification:
        ds.MagnificationType = film.magnification
    if film.smoothing:
        ds.SmoothingType = film.smoothing
    ds.BorderDensity = film.border_density
    ds.EmptyImageDensity = film.empty_image_density
    if film.min_density:
        ds.MinDensity = film.min_density
    if film.max_density:
        ds.MaxDensity = film.max_density
    ds.Trim = film.trim
    reference = Dataset()
    reference.ReferencedSOPClassUID = v.BASIC_FILM_SESSION
    reference.ReferencedSOPInstanceUID = session_uid
    ds.ReferencedFilmSessionSequence = Sequence([reference])
    if lut_uid:
        lut = Dataset()
        lut.ReferencedSOPClassUID = v.PRESENTATION_LUT
        lut.ReferencedSOPInstanceUID = lut_uid
        ds.ReferencedPresentationLUTSequence = Sequence([lut])
    return ds


def image_box_request(box: ImageBox) -> Dataset:
    """The N-SET of one image box: its pixels in the Basic Grayscale or Color Image
    Sequence (PS3.4 H.4.3.1.2.1 / H.4.3.2.2.1)."""
    image = Dataset()
    rows, columns = box.pixels.shape[:2]
    image.Rows, image.Columns = rows, columns
    image.PixelAspectRatio = [1, 1]
    image.PixelRepresentation = 0
    ds = Dataset()
    ds.ImageBoxPosition = box.position
    if box.color:
        image.SamplesPerPixel = 3
        image.PhotometricInterpretation = "RGB"
        image.PlanarConfiguration = 1  # colour-by-plane, as PS3.4 H.4.3.2.2.1 requires
        image.BitsAllocated = image.BitsStored = 8
        image.HighBit = 7
        planes = np.ascontiguousarray(box.pixels.astype(np.uint8).transpose(2, 0, 1))
        image.add(DataElement(0x7FE00010, "OB", planes.tobytes()))
        ds.BasicColorImageSequence = Sequence([image])
    else:
        image.SamplesPerPixel = 1
        image.PhotometricInterpretation = "MONOCHROME2"  # higher values print lighter
        wide = box.bits > 8
        image.BitsAllocated = 16 if wide else 8
        image.BitsStored = box.bits
        image.HighBit = box.bits - 1
        pixels = box.pixels.astype("<u2" if wide else np.uint8)
        image.add(DataElement(0x7FE00010, "OW" if wide else "OB", pixels.tobytes()))
        ds.BasicGrayscaleImageSequence = Sequence([image])
    if box.polarity != "NORMAL":
        ds.Polarity = box.polarity
    if box.magnification:
        ds.MagnificationType = box.magnification
    if box.requested_size_mm:
        ds.RequestedImageSize = f"{box.requested_size_mm:.2f}"
    return ds


def check_films(films: list[Film], capabilities: v.Capabilities) -> None:
    """Refuse before connecting what the printer's template says it cannot do. Warnings
    (a density outside the printer's range) go: the printer uses its own value."""
    problems: list[v.Problem] = []
    for film in films:
        problems += v.check_film_session(film_session_request(film), capabilities)
        problems += v.check_film_box(film_box_request(film, "1.2.3"), capabilities)
        positions = v.positions(film.display_format)
        for box in film.images:
            ds = image_box_request(box)
            problems += v.check_image_box(ds, box.color, positions, capabilities=capabilities)
    refusals = list(dict.fromkeys(p.message for p in problems if not p.is_warning))
    if refusals:
        raise PrintError("; ".join(refusals[:5]), permanent=True)


def open_print_association(
    config: Config, remote: RemoteSection, color: bool, with_lut: bool, report: PrintReport
) -> Association:
    ae = requestor_ae(config)
    ae.maximum_pdu_size = network_for(config.network, remote).send_max_pdu
    contexts = [build_context(meta_class(color), [ImplicitVRLittleEndian])]
    if with_lut:
        contexts.append(build_context(v.PRESENTATION_LUT, [ImplicitVRLittleEndian]))
    handlers = [(evt.EVT_N_EVENT_REPORT, _event_handler(report))]
    assoc = ae.associate(
        remote.host,
        remote.port,
        contexts=contexts,
        ae_title=remote.ae_title,
        evt_handlers=handlers,
        tls_args=tls_args_for(config.network, remote),
    )
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "cannot be reached"
        raise PrintError(f"the printer {remote.name} ({remote.ae_title}@{remote.host}) {why}")
    return assoc


def _event_handler(report: PrintReport) -> Callable[[Any], tuple[int, None]]:
    """Printer and print job N-EVENT-REPORTs: logged and kept for the job's report
    (seed 000 ignores them; the operator is better told)."""

    def handle(event: Any) -> tuple[int, None]:
        info = event.event_information or Dataset()
        text = f"event {event.request.EventTypeID}"
        if "PrinterStatusInfo" in info:
            text += f": {info.PrinterStatusInfo}"
        log.info("printer reports %s", text)
        report.events.append(text)
        return 0x0000, None  # pynetdicom: (status, event reply)

    return handle


def print_films(
    config: Config,
    remote: RemoteSection,
    films: list[Film],
    capabilities: v.Capabilities,
    warning_policy: str = "continue",
    progress: Callable[[str], None] = lambda text: None,
    printed: Callable[[int], None] = lambda number: None,
) -> PrintReport:
    """Print ``films`` (one session: the first film's copies, medium …) on ``remote``;
    ``printed(n)`` is called once film ``n`` (1-based) has been printed."""
    if not films:
        raise PrintError("nothing to print", permanent=True)
    check_films(films, capabilities)
    color = any(f.color for f in films)
    lut_shape = films[0].presentation_lut_shape
    with_lut = lut_shape in v.PRESENTATION_LUT_SHAPES and lut_shape != "INVERSE"
    report = PrintReport()
    assoc = open_print_association(config, remote, color, with_lut, report)
    try:
        session = PrintSession(assoc, color, report)
        state = session.printer_state()
        report.printer = state
        _judge_printer(state, warning_policy, report)
        session_uid, _ = session.create(
            "Film Session", v.BASIC_FILM_SESSION, film_session_request(films[0])
        )
        lut_uid = ""
        if with_lut and session.accepted(v.PRESENTATION_LUT):
            lut = Dataset()
            lut.PresentationLUTShape = lut_shape
            lut_uid, _ = session.create("Presentation LUT", v.PRESENTATION_LUT, lut, on_meta=False)
        elif with_lut:
            report.warnings.append(f"the printer has no Presentation LUT: {lut_shape} not sent")
        for number, film in enumerate(films, start=1):
            progress(f"film {number}/{len(films)}: sending")
            _print_one(session, film, session_uid, lut_uid)
            report.films += 1
            printed(number)
        session.delete("Film Session", v.BASIC_FILM_SESSION, session_uid)
        assoc.release()
    except (RuntimeError, ValueError) as exc:  # pynetdicom: the association broke, a refusal
        raise PrintError(f"printing on {remote.name} stopped: {exc}") from exc
    finally:
        if assoc.is_established:
            assoc.abort()
    return report


def _judge_printer(condition: v.PrinterCondition, warning_policy: str, report: PrintReport) -> None:
    if condition.status == "FAILURE" or condition.stops_queue:
        raise PrintError(f"the printer is not ready: {condition.text}", stopped=True)
    if condition.status == "WARNING":
        if warning_policy == "fail":  # seed 000: a WARNING is a FAILURE
            raise PrintError(f'the printer warns: {condition.text} (warning = "fail")')
        report.warnings.append(f"printer warning: {condition.text}")


def _print_one(session: PrintSession, film: Film, session_uid: str, lut_uid: str) -> None:
    box_uid, created = session.create(
        "Film Box", v.BASIC_FILM_BOX, film_box_request(film, session_uid, lut_uid)
    )
    boxes = {
        n: (str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID))
        for n, ref in enumerate(created.get("ReferencedImageBoxSequence", []), start=1)
    }
    for box in film.images:
        if box.position not in boxes:
            raise PrintError(
                f"the printer made {len(boxes)} image boxes for {film.display_format}, "
                f"position {box.position} is not one",
                permanent=True,
            )
        sop_class, uid = boxes[box.position]
        session.set(f"Image Box {box.position}", sop_class, uid, image_box_request(box))
    session.action("Film Box", v.BASIC_FILM_BOX, box_uid)
    session.delete("Film Box", v.BASIC_FILM_BOX, box_uid)


def query_printer(config: Config, remote: RemoteSection, color: bool = False) -> v.PrinterCondition:
    """The printer's status, on an association of its own (for ``dicombox status``)."""
    report = PrintReport()
    assoc = open_print_association(config, remote, color, False, report)
    try:
        state = PrintSession(assoc, color, report).printer_state()
        assoc.release()
        return state
    finally:
        if assoc.is_established:
            assoc.abort()
