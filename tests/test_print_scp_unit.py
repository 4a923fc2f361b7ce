"""The print SCP state machine (PS3.4 Annex H) driven handler by handler, with requests
built as the network host builds them: a decoded command set, the accepted context and
the data set bytes in a memory sink."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicombox.core.net import commands
from dicombox.core.net.commands import (
    N_ACTION_RQ,
    N_CREATE_RQ,
    N_DELETE_RQ,
    N_GET_RQ,
    N_SET_RQ,
)
from dicombox.core.net.dataset_codec import decode_dataset, encode_dataset
from dicombox.core.net.service import AcceptedContext, MemorySink, Peer, Reply, Request
from dicombox.plugins.print import scp as scp_module
from dicombox.plugins.print.film import Film
from dicombox.plugins.print.scp import PrintSCP

FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAY_BOX = "1.2.840.10008.5.1.1.4"
COLOR_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
PLUT = "1.2.840.10008.5.1.1.23"
GRAY_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


class Printer:
    """What the plugin would wire in: records the films, reports a fixed status."""

    def __init__(self) -> None:
        self.films: list[tuple[Film, Peer]] = []
        self.fail = False

    def submit(self, film: Film, peer: Peer) -> None:
        if self.fail:
            raise OSError("spool full")
        self.films.append((film, peer))

    def status(self) -> tuple[str, str, dict[str, str]]:
        extra = {
            "PrinterName": "dryview",
            "Manufacturer": "ACME",
            "ManufacturerModelName": "DV 5950",
            "SoftwareVersions": "4.2",
        }
        return "NORMAL", "NORMAL", extra


class Modality:
    """One association's worth of requests to ``scp``."""

    def __init__(
        self,
        scp: PrintSCP,
        meta: str = GRAY_META,
        syntax: str = IMPLICIT,
        association: str = "assoc-1",
    ) -> None:
        self.scp, self.meta, self.syntax = scp, meta, syntax
        self.peer = Peer(
            "MODALITY", "DICOMBOX", "10.0.0.7", 40000, 16384, association_id=association
        )
        self.message_id = 0

    def send(
        self,
        field: int,
        sop_class: str,
        uid: str | None = None,
        ds: Dataset | None = None,
        *,
        context: str | None = None,
        raw: bytes | None = None,
        **extra: object,
    ) -> tuple[Reply, Dataset | None]:
        """One request through the handler for ``field``; the reply and its data set."""
        self.message_id += 1
        create = field == N_CREATE_RQ
        values = {
            "CommandField": field,
            "MessageID": self.message_id,
            "AffectedSOPClassUID" if create else "RequestedSOPClassUID": sop_class,
            "AffectedSOPInstanceUID" if create else "RequestedSOPInstanceUID": uid,
            "CommandDataSetType": 0 if (ds is not None or raw is not None) else 0x0101,
            **extra,
        }
        command = commands.decode_command(commands.encode_command(**values))
        sink = None
        if ds is not None or raw is not None:
            sink = MemorySink()
            sink.write(raw if raw is not None else encode_dataset(ds, self.syntax))
            sink.close()
        accepted = AcceptedContext(1, context or self.meta, self.syntax)
        handler = {
            N_CREATE_RQ: self.scp.handle_create,
            N_SET_RQ: self.scp.handle_set,
            N_GET_RQ: self.scp.handle_get,
            N_ACTION_RQ: self.scp.handle_action,
            N_DELETE_RQ: self.scp.handle_delete,
        }[field]
        replies = list(handler(Request(command, accepted, self.peer, sink)))
        assert len(replies) == 1
        reply = replies[0]
        data = decode_dataset(reply.dataset, self.syntax) if reply.dataset is not None else None
        return reply, data

    def film_session(self, **attributes: object) -> str:
        ds = Dataset()
        ds.NumberOfCopies = "1"
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        reply, _ = self.send(N_CREATE_RQ, FILM_SESSION, None, ds)
        assert reply.status == 0x0000, reply.fields
        return reply.fields["AffectedSOPInstanceUID"]

    def film_box(self, session: str, layout: str = "STANDARD\\1,1", **attributes: object):
        ds = film_box_dataset(session, layout)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        reply, data = self.send(N_CREATE_RQ, FILM_BOX, None, ds)
        assert reply.status == 0x0000, reply.fields
        boxes = [str(item.ReferencedSOPInstanceUID) for item in data.ReferencedImageBoxSequence]
        return reply.fields["AffectedSOPInstanceUID"], boxes, data

    def set_image(self, uid: str, position: int, image: Dataset, color: bool = False) -> Reply:
        ds = image_box_dataset(position, image, color)
        return self.send(N_SET_RQ, COLOR_BOX if color else GRAY_BOX, uid, ds)[0]

    def print_box(self, uid: str) -> Reply:
        return self.send(N_ACTION_RQ, FILM_BOX, uid, ActionTypeID=1)[0]


def film_box_dataset(session: str, layout: str = "STANDARD\\1,1") -> Dataset:
    ds = Dataset()
    ds.ImageDisplayFormat = layout
    reference = Dataset()
    reference.ReferencedSOPClassUID = FILM_SESSION
    reference.ReferencedSOPInstanceUID = session
    ds.ReferencedFilmSessionSequence = Sequence([reference])
    return ds


def grey_image(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8) -> Dataset:
    item = Dataset()
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = photometric
    item.Rows, item.Columns = pixels.shape
    item.PixelAspectRatio = [1, 1]
    item.BitsAllocated = 8 if bits == 8 else 16
    item.BitsStored = bits
    item.HighBit = bits - 1
    item.PixelRepresentation = 0
    item.PixelData = pixels.astype("u1" if bits == 8 else "<u2").tobytes()
    return item


def rgb_image(rgb: np.ndarray) -> Dataset:
    item = Dataset()
    item.SamplesPerPixel = 3
    item.PhotometricInterpretation = "RGB"
    item.PlanarConfiguration = 1
    item.Rows, item.Columns = rgb.shape[:2]
    item.PixelAspectRatio = [1, 1]
    item.BitsAllocated = item.BitsStored = 8
    item.HighBit = 7
    item.PixelRepresentation = 0
    item.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype("u1").tobytes()
    return item


def image_box_dataset(position: int, image: Dataset | None, color: bool = False) -> Dataset:
    ds = Dataset()
    ds.ImageBoxPosition = position
    ds.Polarity = "NORMAL"
    items = Sequence([image] if image is not None else [])
    setattr(ds, "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence", items)
    return ds


@pytest.fixture
def printer() -> Printer:
    return Printer()


@pytest.fixture
def scp(printer: Printer) -> PrintSCP:
    return PrintSCP(
        submit=printer.submit,
        printer_status=printer.status,
        annotations=lambda peer: [f"from {peer.calling_ae}"],
    )


def ramp(rows: int, columns: int, top: int = 255) -> np.ndarray:
    return (np.arange(rows * columns).reshape(rows, columns) * 7 % (top + 1)).astype(np.uint16)


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT])
def test_grayscale_session_prints_a_film_with_both_images(scp, printer, syntax):
    modality = Modality(scp, syntax=syntax)
    plut_reply, plut = modality.send(N_CREATE_RQ, PLUT, None, _shape("LIN OD"), context=PLUT)
    assert plut_reply.status == 0 and plut.PresentationLUTShape == "LIN OD"
    lut_uid = plut_reply.fields["AffectedSOPInstanceUID"]
    session = modality.film_session(
        NumberOfCopies="2",
        PrintPriority="HIGH",
        MediumType="BLUE FILM",
        FilmDestination="PROCESSOR",
        FilmSessionLabel="CHEST",
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = PLUT
    reference.ReferencedSOPInstanceUID = lut_uid
    film_box, boxes, created = modality.film_box(
        session,
        "STANDARD\\2,1",
        FilmOrientation="LANDSCAPE",
        FilmSizeID="14INX17IN",
        MagnificationType="CUBIC",
        SmoothingType="MEDIUM",
        BorderDensity="WHITE",
        MaxDensity=320,
        ReferencedPresentationLUTSequence=Sequence([reference]),
    )
    # PS3.4 H.4.2.2.1: one grayscale image box per position, and the film session named.
    assert len(boxes) == 2 and len(set(boxes)) == 2
    assert {str(i.ReferencedSOPClassUID) for i in created.ReferencedImageBoxSequence} == {GRAY_BOX}
    assert created.ReferencedFilmSessionSequence[0].ReferencedSOPInstanceUID == session
    assert created.Trim == "NO"  # a default the SCP filled in
    first, second = ramp(4, 5), 255 - ramp(3, 6)
    assert modality.set_image(boxes[0], 1, grey_image(first)).status == 0
    assert modality.set_image(boxes[1], 2, grey_image(second)).status == 0
    assert printer.films == []  # nothing printed before the N-ACTION

    assert modality.print_box(film_box).status == 0

    assert len(printer.films) == 1
    film, peer = printer.films[0]
    assert peer.calling_ae == "MODALITY"
    assert (film.display_format, film.film_size, film.orientation) == (
        "STANDARD\\2,1",
        "14INX17IN",
        "LANDSCAPE",
    )
    assert (film.magnification, film.smoothing, film.border_density) == ("CUBIC", "MEDIUM", "WHITE")
    assert (film.max_density, film.min_density, film.trim) == (320, 0, "NO")
    assert (film.copies, film.priority, film.medium, film.destination, film.label) == (
        2,
        "HIGH",
        "BLUE FILM",
        "PROCESSOR",
        "CHEST",
    )
    assert film.presentation_lut_shape == "LIN OD"
    assert film.annotations == ["from MODALITY"]
    assert [box.position for box in film.images] == [1, 2]
    assert all(box.bits == 8 and box.pixels.dtype == np.uint8 for box in film.images)
    np.testing.assert_array_equal(film.images[0].pixels, first)
    np.testing.assert_array_equal(film.images[1].pixels, second)
    assert not film.color


def test_color_session_prints_rgb(scp, printer):
    modality = Modality(scp, meta=COLOR_META)
    session = modality.film_session()
    film_box, boxes, created = modality.film_box(session, "STANDARD\\1,1")
    assert str(created.ReferencedImageBoxSequence[0].ReferencedSOPClassUID) == COLOR_BOX
    rgb = np.stack([ramp(4, 6), 255 - ramp(4, 6), np.full((4, 6), 9)], axis=-1).astype(np.uint8)
    assert modality.set_image(boxes[0], 1, rgb_image(rgb), color=True).status == 0
    assert modality.print_box(film_box).status == 0
    film = printer.films[0][0]
    assert film.color and film.images[0].pixels.shape == (4, 6, 3)
    np.testing.assert_array_equal(film.images[0].pixels, rgb)


def test_12_bit_grayscale_keeps_12_bits(scp, printer):
    modality = Modality(scp, syntax=EXPLICIT)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    pixels = ramp(8, 8, top=4095) * 61 % 4096
    image = grey_image(pixels, bits=12)
    # Bits above High Bit (an overlay, say) are not part of the pixel.
    image.PixelData = (pixels.astype("<u2") | 0xF000).tobytes()
    assert modality.set_image(boxes[0], 1, image).status == 0
    modality.print_box(film_box)
    box = printer.films[0][0].images[0]
    assert box.bits == 12 and box.pixels.dtype == np.uint16
    np.testing.assert_array_equal(box.pixels, pixels)


@pytest.mark.parametrize("bits", [8, 12])
def test_monochrome1_is_inverted_so_higher_prints_lighter(scp, printer, bits):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session(), "STANDARD\\2,1")
    top = (1 << bits) - 1
    pixels = ramp(4, 4, top=top)
    assert modality.set_image(boxes[0], 1, grey_image(pixels, "MONOCHROME1", bits)).status == 0
    assert (
        modality.set_image(boxes[1], 2, grey_image(top - pixels, "MONOCHROME2", bits)).status == 0
    )
    modality.print_box(film_box)
    one, two = printer.films[0][0].images
    # The same picture sent both ways prints the same.
    np.testing.assert_array_equal(one.pixels, top - pixels)
    np.testing.assert_array_equal(one.pixels, two.pixels)


def test_film_box_before_film_session_is_refused(scp, printer):
    modality = Modality(scp)
    reply, _ = modality.send(N_CREATE_RQ, FILM_BOX, None, film_box_dataset("1.2.3"))
    assert reply.status == 0x0110
    assert "film session" in reply.fields["ErrorComment"]


def test_missing_image_display_format_is_0120(scp):
    modality = Modality(scp)
    session = modality.film_session()
    ds = film_box_dataset(session)
    del ds.ImageDisplayFormat
    reply, _ = modality.send(N_CREATE_RQ, FILM_BOX, None, ds)
    assert reply.status == 0x0120
    assert "ImageDisplayFormat" in reply.fields["ErrorComment"]


def test_film_box_naming_another_session_or_an_unknown_layout_is_0106(scp):
    modality = Modality(scp)
    session = modality.film_session()
    reply, _ = modality.send(N_CREATE_RQ, FILM_BOX, None, film_box_dataset("1.2.3.4"))
    assert reply.status == 0x0106
    reply, _ = modality.send(N_CREATE_RQ, FILM_BOX, None, film_box_dataset(session, "SLIDE"))
    assert reply.status == 0x0106


def test_image_box_position_must_match_the_instance(scp, printer):
    modality = Modality(scp)
    _, boxes, _ = modality.film_box(modality.film_session(), "STANDARD\\2,1")
    reply = modality.set_image(boxes[0], 2, grey_image(ramp(2, 2)))
    assert reply.status == 0x0106
    assert reply.fields["AttributeIdentifierList"] == [Tag("ImageBoxPosition")]


def test_unknown_image_box_is_0112(scp):
    modality = Modality(scp)
    # Before any film box (out of order), then with one that does not hold the instance.
    assert modality.set_image("1.2.3.4", 1, grey_image(ramp(2, 2))).status == 0x0112
    modality.film_box(modality.film_session())
    assert modality.set_image("1.2.3.4", 1, grey_image(ramp(2, 2))).status == 0x0112


def test_image_of_the_other_meta_class_is_0106(scp):
    modality = Modality(scp)
    _, boxes, _ = modality.film_box(modality.film_session())
    ds = image_box_dataset(1, grey_image(ramp(2, 2)))
    ds.BasicColorImageSequence = Sequence([rgb_image(np.zeros((2, 2, 3), np.uint8))])
    reply, _ = modality.send(N_SET_RQ, GRAY_BOX, boxes[0], ds)
    assert reply.status == 0x0106
    assert reply.fields["AttributeIdentifierList"] == [Tag("BasicColorImageSequence")]
    # The colour image box class is not part of the grayscale meta SOP class at all.
    reply = modality.set_image(boxes[0], 1, rgb_image(np.zeros((2, 2, 3), np.uint8)), True)
    assert reply.status == 0x0118


def test_printing_an_empty_film_box_warns_b603_and_prints_nothing(scp, printer):
    modality = Modality(scp)
    film_box, _, _ = modality.film_box(modality.film_session(), "STANDARD\\2,2")
    reply = modality.print_box(film_box)
    assert reply.status == 0xB603
    assert reply.fields["ErrorComment"] == "film box contains no image box"
    assert printer.films == []


def test_film_session_print_without_film_box_is_c600(scp, printer):
    modality = Modality(scp)
    session = modality.film_session()
    reply, _ = modality.send(N_ACTION_RQ, FILM_SESSION, session, ActionTypeID=1)
    assert reply.status == 0xC600
    assert printer.films == []


def test_film_session_print_prints_every_film_box_in_order(scp, printer):
    modality = Modality(scp)
    session = modality.film_session(NumberOfCopies="3")
    first, first_boxes, _ = modality.film_box(session)
    second, second_boxes, _ = modality.film_box(session, "ROW\\1,2")
    empty, _, _ = modality.film_box(session)
    modality.set_image(first_boxes[0], 1, grey_image(ramp(2, 2)))
    modality.set_image(second_boxes[2], 3, grey_image(ramp(3, 3)))
    reply, _ = modality.send(N_ACTION_RQ, FILM_SESSION, session, ActionTypeID=1)
    assert reply.status == 0xB602  # the empty film box is left out
    films = [film for film, _ in printer.films]
    assert [film.display_format for film in films] == ["STANDARD\\1,1", "ROW\\1,2"]
    assert [[box.position for box in film.images] for film in films] == [[1], [3]]
    assert all(film.copies == 3 for film in films)


def test_other_action_types_are_refused(scp, printer):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    modality.set_image(boxes[0], 1, grey_image(ramp(2, 2)))
    reply, _ = modality.send(N_ACTION_RQ, FILM_BOX, film_box, ActionTypeID=2)
    assert reply.status == 0x0123 and printer.films == []


def test_printer_n_get(scp):
    modality = Modality(scp)
    reply, ds = modality.send(N_GET_RQ, PRINTER, PRINTER_INSTANCE)
    assert reply.status == 0
    assert (ds.PrinterStatus, ds.PrinterStatusInfo, ds.PrinterName) == (
        "NORMAL",
        "NORMAL",
        "dryview",
    )
    assert (ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions) == (
        "ACME",
        "DV 5950",
        "4.2",
    )


def test_printer_n_get_with_attribute_identifier_list(scp):
    modality = Modality(scp)
    wanted = [Tag("PrinterStatus"), Tag("PrinterName"), Tag("DeviceSerialNumber")]
    reply, ds = modality.send(N_GET_RQ, PRINTER, PRINTER_INSTANCE, AttributeIdentifierList=wanted)
    assert reply.status == 0
    assert [int(elem.tag) for elem in ds] == sorted(wanted)
    assert ds.PrinterStatus == "NORMAL" and ds.PrinterName == "dryview"
    assert ds["DeviceSerialNumber"].is_empty  # a Printer attribute we have no value for


def test_printer_n_get_of_another_instance_is_0112(scp):
    reply, _ = Modality(scp).send(N_GET_RQ, PRINTER, "1.2.3.4")
    assert reply.status == 0x0112


def test_deleted_film_box_cannot_be_set_or_printed(scp, printer):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    assert modality.send(N_DELETE_RQ, FILM_BOX, film_box)[0].status == 0
    assert modality.set_image(boxes[0], 1, grey_image(ramp(2, 2))).status == 0x0112
    assert modality.print_box(film_box).status == 0x0112
    assert modality.send(N_DELETE_RQ, FILM_BOX, film_box)[0].status == 0x0112


def test_deleting_the_film_session_takes_its_film_boxes(scp):
    modality = Modality(scp)
    session = modality.film_session()
    film_box, _, _ = modality.film_box(session)
    assert modality.send(N_DELETE_RQ, FILM_SESSION, session)[0].status == 0
    assert modality.print_box(film_box).status == 0x0112
    assert modality.send(N_DELETE_RQ, FILM_SESSION, session)[0].status == 0x0112
    modality.film_session()  # a new one may follow


def test_one_film_session_per_association(scp):
    modality = Modality(scp)
    session = modality.film_session()
    assert modality.send(N_CREATE_RQ, FILM_SESSION, None, Dataset())[0].status == 0x0110
    assert modality.send(N_CREATE_RQ, FILM_SESSION, session, Dataset())[0].status == 0x0111
    # Another association has its own.
    Modality(scp, association="assoc-2").film_session()


def test_associations_do_not_see_each_others_instances(scp):
    one, two = Modality(scp), Modality(scp, association="assoc-2")
    film_box, boxes, _ = one.film_box(one.film_session())
    two.film_session()
    assert two.set_image(boxes[0], 1, grey_image(ramp(2, 2))).status == 0x0112
    assert two.print_box(film_box).status == 0x0112


def test_association_ended_drops_the_state(scp):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    scp.association_ended("assoc-1")
    assert modality.set_image(boxes[0], 1, grey_image(ramp(2, 2))).status == 0x0112
    assert modality.print_box(film_box).status == 0x0112
    modality.film_session()  # the association could start over
    scp.association_ended("assoc-1")
    scp.association_ended("never-seen")  # harmless
    assert scp._associations == {}


def test_idle_state_is_dropped_when_a_session_starts(scp, monkeypatch):
    old = Modality(scp, association="old")
    old.film_box(old.film_session())
    now = time.monotonic()
    monkeypatch.setattr(scp_module.time, "monotonic", lambda: now + scp_module.IDLE_LIMIT_S + 1)
    Modality(scp, association="new").film_session()
    assert set(scp._associations) == {"new"}


def test_n_set_film_session_and_film_box(scp, printer):
    modality = Modality(scp)
    session = modality.film_session()
    film_box, boxes, _ = modality.film_box(session)
    change = Dataset()
    change.NumberOfCopies = "4"
    change.FilmSessionLabel = "LATER"
    assert modality.send(N_SET_RQ, FILM_SESSION, session, change)[0].status == 0
    change = Dataset()
    change.BorderDensity = "150"
    assert modality.send(N_SET_RQ, FILM_BOX, film_box, change)[0].status == 0
    # The layout is the N-CREATE's (PS3.4 H.4.2.2.2): 0x0105, naming the attribute.
    change = Dataset()
    change.ImageDisplayFormat = "STANDARD\\3,3"
    reply, _ = modality.send(N_SET_RQ, FILM_BOX, film_box, change)
    assert reply.status == 0x0105
    assert reply.fields["AttributeIdentifierList"] == [Tag("ImageDisplayFormat")]
    modality.set_image(boxes[0], 1, grey_image(ramp(2, 2)))
    modality.print_box(film_box)
    film = printer.films[0][0]
    assert (film.copies, film.label, film.border_density) == (4, "LATER", "150")
    assert film.display_format == "STANDARD\\1,1"


def test_empty_image_sequence_erases_the_image_box(scp, printer):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    modality.set_image(boxes[0], 1, grey_image(ramp(2, 2)))
    assert modality.set_image(boxes[0], 1, None).status == 0
    assert modality.print_box(film_box).status == 0xB603


def test_presentation_lut_as_a_sequence_or_unknown_shape_is_0106(scp):
    modality = Modality(scp)
    ds = Dataset()
    item = Dataset()
    item.LUTDescriptor = [256, 0, 12]
    item.add_new("LUTData", "US", list(range(256)))
    ds.PresentationLUTSequence = Sequence([item])
    assert modality.send(N_CREATE_RQ, PLUT, None, ds, context=PLUT)[0].status == 0x0106
    reply, _ = modality.send(N_CREATE_RQ, PLUT, None, _shape("INVERSE"), context=PLUT)
    assert reply.status == 0x0106


def test_film_box_referencing_an_unknown_presentation_lut_is_0106(scp):
    modality = Modality(scp)
    ds = film_box_dataset(modality.film_session())
    reference = Dataset()
    reference.ReferencedSOPClassUID = PLUT
    reference.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedPresentationLUTSequence = Sequence([reference])
    assert modality.send(N_CREATE_RQ, FILM_BOX, None, ds)[0].status == 0x0106


def test_presentation_lut_delete(scp):
    modality = Modality(scp)
    reply, _ = modality.send(N_CREATE_RQ, PLUT, None, _shape("IDENTITY"), context=PLUT)
    uid = reply.fields["AffectedSOPInstanceUID"]
    assert modality.send(N_DELETE_RQ, PLUT, uid, context=PLUT)[0].status == 0
    assert modality.send(N_DELETE_RQ, PLUT, uid, context=PLUT)[0].status == 0x0112


def test_validator_problems_are_0106(printer):
    scp = PrintSCP(
        printer.submit,
        printer.status,
        check_film_box=lambda ds: ["Film Size ID 99INX99IN not supported"],
        check_film_session=lambda ds: [],
        check_image_box=lambda ds, color, positions: [f"{color} {positions}"],
    )
    modality = Modality(scp)
    session = modality.film_session()
    reply, _ = modality.send(N_CREATE_RQ, FILM_BOX, None, film_box_dataset(session))
    assert reply.status == 0x0106
    assert reply.fields["ErrorComment"] == "Film Size ID 99INX99IN not supported"


def test_image_box_validator_gets_colour_and_positions(printer):
    seen = []

    def check(ds, color, positions):
        seen.append((int(ds.ImageBoxPosition), color, positions))
        return []

    scp = PrintSCP(printer.submit, printer.status, check_image_box=check)
    modality = Modality(scp)
    _, boxes, _ = modality.film_box(modality.film_session(), "COL\\2,1")
    assert modality.set_image(boxes[1], 2, grey_image(ramp(2, 2))).status == 0
    assert seen == [(2, False, 3)]


def test_bad_pixels_are_0106(scp):
    modality = Modality(scp)
    _, boxes, _ = modality.film_box(modality.film_session())
    short = grey_image(ramp(4, 4))
    short.PixelData = b"\x00" * 6
    assert modality.set_image(boxes[0], 1, short).status == 0x0106
    signed = grey_image(ramp(2, 2))
    signed.PhotometricInterpretation = "RGB"
    assert modality.set_image(boxes[0], 1, signed).status == 0x0106


def test_undecodable_data_set_is_0110(scp):
    # A Referenced Film Session Sequence whose item runs past the end of the data set.
    raw = (
        b"\x10\x20\x00\x05\xff\xff\xff\xff"
        b"\xfe\xff\x00\xe0\x08\x00\x00\x00"
        b"\x08\x00\x50\x11\x20\x00\x00\x00"
    )
    reply, _ = Modality(scp).send(N_CREATE_RQ, FILM_SESSION, None, raw=raw)
    assert reply.status == 0x0110
    assert reply.fields["ErrorComment"].startswith("data set cannot be parsed")


def test_a_failing_submit_is_answered_not_raised(scp, printer):
    modality = Modality(scp)
    film_box, boxes, _ = modality.film_box(modality.film_session())
    modality.set_image(boxes[0], 1, grey_image(ramp(2, 2)))
    printer.fail = True
    reply = modality.print_box(film_box)
    assert reply.status == 0xC602 and "spool full" in reply.fields["ErrorComment"]


def test_unexpected_errors_become_processing_failure(printer):
    def broken() -> tuple[str, str, dict[str, str]]:
        raise RuntimeError("printer HAL crashed")

    reply, _ = Modality(PrintSCP(printer.submit, broken)).send(N_GET_RQ, PRINTER, PRINTER_INSTANCE)
    assert reply.status == 0x0110 and "crashed" in reply.fields["ErrorComment"]


def test_operations_a_class_does_not_have(scp):
    modality = Modality(scp)
    assert modality.send(N_GET_RQ, FILM_BOX, "1.2.3")[0].status == 0x0211
    assert modality.send(N_DELETE_RQ, PRINTER, PRINTER_INSTANCE)[0].status == 0x0211
    assert modality.send(N_GET_RQ, "1.2.840.10008.5.1.4.1.1.2", "1.2.3")[0].status == 0x0118


def test_refusals_are_logged_with_the_callers_ae_title(scp, caplog):
    caplog.set_level(logging.INFO, logger="dicombox.print")
    Modality(scp).send(N_CREATE_RQ, FILM_BOX, None, film_box_dataset("1.2.3"))
    refusals = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 1
    assert "MODALITY" in refusals[0].getMessage() and "0x0110" in refusals[0].getMessage()


def test_services(scp):
    (service,) = scp.services(("PRINTSCP",))
    assert service.ae_titles == ("PRINTSCP",)
    assert {c.abstract_syntax for c in service.contexts} == {GRAY_META, COLOR_META, PLUT}
    assert all(set(c.transfer_syntaxes) == {IMPLICIT, EXPLICIT} for c in service.contexts)
    assert set(service.handlers) == {N_CREATE_RQ, N_SET_RQ, N_GET_RQ, N_ACTION_RQ, N_DELETE_RQ}


def _shape(shape: str) -> Dataset:
    ds = Dataset()
    ds.PresentationLUTShape = shape
    return ds
