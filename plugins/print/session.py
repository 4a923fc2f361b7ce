"""What a Basic Print Management SCP keeps for one association (PS3.4 H.2, H.4): the film
session, its film boxes with their image boxes, and the Presentation LUTs; and the
conversions from what the SCU sends to the ``Film`` the printer gets.

Nothing here speaks DIMSE. The handlers in ``scp`` decode a request, change this model
and turn a ``Refusal`` raised here into a response status. Values are checked here only
as far as building a ``Film`` needs (numbers that must be numbers, a layout we can count);
which values a printer allows is the business of the validators the plugin hooks in.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicombox.plugins.print.film import Film, ImageBox
from dicombox.plugins.print.vocabulary import parse_display_format

# Status codes: PS3.7 Annex C for the general ones, PS3.4 H.4 for the print ones. The
# warnings 0x0107 and 0x0116 are never used: common print SCUs (DCMTK's among them) take
# anything but 0x0000 and 0xBxxx as failure, so an SCP that means "done" must not send them.
SUCCESS = 0x0000
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
MISSING_VALUE = 0x0121
NO_SUCH_ACTION = 0x0123
UNRECOGNIZED_OPERATION = 0x0211
EMPTY_PAGE_IN_SESSION = 0xB602  # PS3.4 Table H.4-4
EMPTY_FILM_BOX = 0xB603  # PS3.4 Table H.4-9
NO_FILM_BOX = 0xC600  # PS3.4 Table H.4-4
SESSION_NOT_QUEUED = 0xC601  # PS3.4 Table H.4-4
FILM_BOX_NOT_QUEUED = 0xC602  # PS3.4 Table H.4-9

# More image boxes than any film layout has; caps what one film box N-CREATE may cost.
MAX_POSITIONS = 100

# PS3.4 H.4.1.2.1-2: what a Basic Film Session N-CREATE or N-SET may carry. Illumination,
# Reflected Ambient Light and the Presentation LUT reference belong to the Presentation
# LUT SOP Class (PS3.4 H.4.9) and may come at session or film box level.
FILM_SESSION_ATTRIBUTES = frozenset(
    {
        "NumberOfCopies",
        "PrintPriority",
        "MediumType",
        "FilmDestination",
        "FilmSessionLabel",
        "MemoryAllocation",
        "OwnerID",
        "Illumination",
        "ReflectedAmbientLight",
        "ReferencedPresentationLUTSequence",
    }
)
# PS3.4 H.4.2.2.2: what a Basic Film Box N-SET may change.
FILM_BOX_SETTABLE = frozenset(
    {
        "MagnificationType",
        "MaxDensity",
        "ConfigurationInformation",
        "SmoothingType",
        "BorderDensity",
        "EmptyImageDensity",
        "MinDensity",
        "Trim",
        "Illumination",
        "ReflectedAmbientLight",
        "ReferencedPresentationLUTSequence",
    }
)
# PS3.4 H.4.2.2.1: the N-CREATE also fixes the layout, which cannot change once the image
# boxes exist.
FILM_BOX_CREATE_ONLY = frozenset(
    {
        "ImageDisplayFormat",
        "ReferencedFilmSessionSequence",
        "FilmOrientation",
        "FilmSizeID",
        "AnnotationDisplayFormatID",
        "RequestedResolutionID",
    }
)
FILM_BOX_ATTRIBUTES = FILM_BOX_SETTABLE | FILM_BOX_CREATE_ONLY
GRAYSCALE_SEQUENCE = "BasicGrayscaleImageSequence"
COLOR_SEQUENCE = "BasicColorImageSequence"
# PS3.4 H.4.3.1.2.1 and H.4.3.2.2.1: Basic Grayscale / Color Image Box N-SET, without the
# image sequence, which depends on the class.
IMAGE_BOX_ATTRIBUTES = frozenset(
    {
        "ImageBoxPosition",
        "Polarity",
        "MagnificationType",
        "SmoothingType",
        "MinDensity",
        "MaxDensity",
        "ConfigurationInformation",
        "RequestedImageSize",
        "RequestedDecimateCropBehavior",
        "ReferencedPresentationLUTSequence",
    }
)
# PS3.4 H.4.6.2.1: the attributes of the Printer SOP Class an N-GET may ask for.
PRINTER_ATTRIBUTES = frozenset(
    {
        "PrinterStatus",
        "PrinterStatusInfo",
        "PrinterName",
        "Manufacturer",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "SoftwareVersions",
        "DateOfLastCalibration",
        "TimeOfLastCalibration",
    }
)
# PS3.4 H.4.9.1: the shapes of a print Presentation LUT.
LUT_SHAPES = frozenset({"IDENTITY", "LIN OD"})

# What the SCP fills in when the SCU leaves a type 2/3 attribute out; the film box ones are
# the defaults ``Film`` itself prints with, so the response says what will be printed.
_FILM = Film()
FILM_SESSION_DEFAULTS = {"NumberOfCopies": str(_FILM.copies), "PrintPriority": _FILM.priority}
FILM_BOX_DEFAULTS = {
    "FilmOrientation": _FILM.orientation,
    "FilmSizeID": _FILM.film_size,
    "MagnificationType": _FILM.magnification,
    "BorderDensity": _FILM.border_density,
    "EmptyImageDensity": _FILM.empty_image_density,
    "Trim": _FILM.trim,
}
_SPECIFIC_CHARACTER_SET = 0x00080005


class Refusal(Exception):
    """A request answered with a failure status. ``tags`` name the offending attributes
    (sent as Attribute Identifier List where the response has that field)."""

    def __init__(self, status: int, comment: str, tags: Iterable[int] = ()) -> None:
        super().__init__(comment)
        self.status, self.comment, self.tags = status, comment, list(tags)


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def split_attributes(ds: Dataset, allowed: Iterable[str]) -> tuple[Dataset, list[int]]:
    """The elements of ``ds`` named in ``allowed``, and the tags of the others (group
    lengths and Specific Character Set, which describe the rest, are neither)."""
    wanted = frozenset(allowed)
    kept, others = Dataset(), []
    for elem in ds:
        if elem.keyword in wanted:
            kept.add(elem)
        elif elem.tag.element != 0 and elem.tag != _SPECIFIC_CHARACTER_SET:
            others.append(int(elem.tag))
    return kept, others


def require(ds: Dataset, keyword: str) -> None:
    """Refuse a request whose mandatory attribute is absent (0x0120) or empty (0x0121)."""
    if keyword not in ds:
        raise Refusal(MISSING_ATTRIBUTE, f"{keyword} missing", [tag_of(keyword)])
    if ds[keyword].is_empty:
        raise Refusal(MISSING_VALUE, f"{keyword} has no value", [tag_of(keyword)])


def read_int(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute (US, IS) or None when absent or empty; 0x0106 when not a number."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        comment = f"{keyword} {value!r} is not a number"
        raise Refusal(INVALID_VALUE, comment, [tag_of(keyword)]) from None


def read_text(ds: Dataset, keyword: str, default: str) -> str:
    """A string attribute, ``default`` when absent or empty."""
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or default


def with_defaults(ds: Dataset, defaults: dict[str, str]) -> Dataset:
    """A copy of ``ds`` with ``defaults`` for what it leaves out."""
    filled = copy.deepcopy(ds)
    for keyword, value in defaults.items():
        if keyword not in filled:
            setattr(filled, keyword, value)
    return filled


def merged(old: Dataset, new: Dataset) -> Dataset:
    """``old`` with the elements of an N-SET's ``new`` replacing its own."""
    result = copy.deepcopy(old)
    for elem in new:
        result[elem.tag] = copy.deepcopy(elem)
    return result


def image_positions(display_format: str) -> int:
    """How many image boxes an Image Display Format (2010,0010) lays out, as the print
    vocabulary parses it (PS3.3 C.13.3). SLIDE, SUPERSLIDE and CUSTOM\\i depend on a
    conformance statement we do not have, so they are refused like anything else we
    cannot count."""
    try:
        count = parse_display_format(display_format).positions
    except ValueError as exc:
        raise Refusal(
            INVALID_VALUE, f"Image Display Format: {exc}", [tag_of("ImageDisplayFormat")]
        ) from None
    if count > MAX_POSITIONS:
        raise Refusal(
            INVALID_VALUE,
            f"Image Display Format {display_format!r}: more than {MAX_POSITIONS} images",
            [tag_of("ImageDisplayFormat")],
        )
    return count


def check_film_session(ds: Dataset) -> None:
    """The structural checks of a film session's attributes: a usable number of copies."""
    copies = read_int(ds, "NumberOfCopies")
    if copies is not None and copies < 1:
        raise Refusal(INVALID_VALUE, f"Number of Copies {copies}", [tag_of("NumberOfCopies")])


def check_film_box(ds: Dataset) -> None:
    """The structural checks of a film box's attributes: densities that are numbers."""
    for keyword in ("MinDensity", "MaxDensity"):
        read_int(ds, keyword)


def check_image_box(ds: Dataset) -> None:
    """The structural checks of an image box's attributes: the polarity ``ImageBox``
    knows, a requested size that is a number."""
    polarity = read_text(ds, "Polarity", "NORMAL")
    if polarity not in ("NORMAL", "REVERSE"):
        raise Refusal(INVALID_VALUE, f"Polarity {polarity!r}", [tag_of("Polarity")])
    requested_size_mm(ds)


def requested_size_mm(ds: Dataset) -> float:
    """Requested Image Size (2020,0030): the printed width in mm, 0 when not given."""
    value = ds.get("RequestedImageSize")
    if value is None or value == "":
        return 0.0
    try:
        size = float(value)
    except (TypeError, ValueError):
        size = -1.0
    if size < 0:
        raise Refusal(
            INVALID_VALUE, f"Requested Image Size {value!r}", [tag_of("RequestedImageSize")]
        )
    return size


@dataclass
class ImageSlot:
    """One image box of a film box (PS3.4 H.4.3): empty until an N-SET fills it."""

    uid: str
    position: int  # Image Box Position, 1-based
    image: ImageBox | None = None


@dataclass
class FilmBoxState:
    """One film box: its attributes as created and set, and its image boxes in order."""

    uid: str
    color: bool  # made under the Basic Color Print Management Meta SOP Class
    attributes: Dataset
    slots: list[ImageSlot]
    lut_shape: str | None = None  # of the Presentation LUT it references, if any

    @classmethod
    def create(
        cls, uid: str, color: bool, attributes: Dataset, positions: int, lut_shape: str | None
    ) -> FilmBoxState:
        """A film box with ``positions`` empty image boxes, each with a new instance UID."""
        slots = [ImageSlot(str(generate_uid()), n) for n in range(1, positions + 1)]
        return cls(uid, color, attributes, slots, lut_shape)

    @property
    def images(self) -> list[ImageBox]:
        """The images of the filled image boxes, by position."""
        return [slot.image for slot in self.slots if slot.image is not None]


@dataclass
class FilmSessionState:
    """The film session and its film boxes in the order they were created."""

    uid: str
    attributes: Dataset
    film_boxes: dict[str, FilmBoxState] = field(default_factory=dict)
    lut_shape: str | None = None  # a session-level Presentation LUT, if referenced


@dataclass
class PrintAssociation:
    """Everything one association has created; all of it goes when the association ends
    (PS3.4 H.2: the SOP instances of print management live as long as their association)."""

    calling_ae: str
    session: FilmSessionState | None = None
    luts: dict[str, str] = field(default_factory=dict)  # Presentation LUT UID -> shape
    touched: float = field(default_factory=time.monotonic)

    def film_box(self, uid: str) -> FilmBoxState | None:
        """The film box with instance ``uid``, if the session has it."""
        return self.session.film_boxes.get(uid) if self.session else None

    def image_slot(self, uid: str) -> tuple[FilmBoxState, ImageSlot] | None:
        """The image box with instance ``uid`` and the film box it belongs to."""
        boxes = self.session.film_boxes.values() if self.session else ()
        for box in boxes:
            for slot in box.slots:
                if slot.uid == uid:
                    return box, slot
        return None

    def holds(self, uid: str) -> bool:
        """Is ``uid`` the instance UID of anything this association created?"""
        if uid in self.luts or (self.session is not None and self.session.uid == uid):
            return True
        return self.film_box(uid) is not None or self.image_slot(uid) is not None


def referenced_lut(luts: dict[str, str], ds: Dataset) -> str | None:
    """The shape of the Presentation LUT that ``ds`` references by Referenced Presentation
    LUT Sequence; None for an empty sequence (no Presentation LUT). Resolved when the
    reference arrives, so a later N-DELETE of the LUT cannot leave a film box dangling."""
    tag = tag_of("ReferencedPresentationLUTSequence")
    sequence = ds.get("ReferencedPresentationLUTSequence") or []
    if not sequence:
        return None
    uid = str(sequence[0].get("ReferencedSOPInstanceUID", ""))
    shape = luts.get(uid)
    if shape is None:
        raise Refusal(INVALID_VALUE, f"no Presentation LUT {uid}", [tag])
    return shape


def read_image(ds: Dataset, color: bool, position: int) -> ImageBox | None:
    """The image an image box N-SET carries, or None when its image sequence is present
    but empty, which erases the image box (PS3.4 H.4.3.1.2.1.3)."""
    keyword = COLOR_SEQUENCE if color else GRAYSCALE_SEQUENCE
    sequence_tag = tag_of(keyword)
    if keyword not in ds:
        raise Refusal(MISSING_ATTRIBUTE, f"{keyword} missing", [sequence_tag])
    sequence = ds[keyword].value
    if not sequence:
        return None
    if len(sequence) != 1:
        raise Refusal(INVALID_VALUE, f"{keyword} has {len(sequence)} items", [sequence_tag])
    pixels, bits = decode_pixels(sequence[0], color, sequence_tag)
    return ImageBox(
        position=position,
        pixels=pixels,
        bits=bits,
        polarity=read_text(ds, "Polarity", "NORMAL"),
        magnification=read_text(ds, "MagnificationType", ""),
        requested_size_mm=requested_size_mm(ds),
    )


def decode_pixels(item: Dataset, color: bool, sequence_tag: int) -> tuple[np.ndarray, int]:
    """The pixels of a Basic Grayscale or Color Image Sequence item (PS3.4 H.4.3) as
    ``ImageBox`` takes them, and their significant bits.

    Grayscale is 8 bits in 8 or 12 bits in 16 (PS3.4 H.4.3.1.2.1); MONOCHROME1 is
    inverted so that, as for MONOCHROME2, the highest value prints lightest (the P-value
    sense PS3.3 C.13.5 gives image boxes). Colour is 8-bit RGB, sent colour-by-plane
    (Planar Configuration 1, PS3.4 H.4.3.2.2.1); colour-by-pixel is taken as well, since
    the attribute says unambiguously which it is.
    """

    def refuse(comment: str) -> Refusal:
        return Refusal(INVALID_VALUE, comment, [sequence_tag])

    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelData"):
        if keyword not in item or item[keyword].is_empty:
            raise Refusal(MISSING_ATTRIBUTE, f"{keyword} missing in the image", [sequence_tag])
    rows, columns = int(item.Rows), int(item.Columns)
    layout = (int(item.BitsAllocated), int(item.BitsStored))
    photometric = read_text(item, "PhotometricInterpretation", "")
    samples = int(item.get("SamplesPerPixel", 3 if color else 1))
    if int(item.get("PixelRepresentation", 0)) != 0:
        raise refuse("signed pixels in an image box")
    if color and (photometric != "RGB" or samples != 3 or layout != (8, 8)):
        raise refuse(f"colour image {photometric} {samples}x{layout[1]} bits; need RGB 3x8")
    if not color and (
        photometric not in ("MONOCHROME1", "MONOCHROME2")
        or samples != 1
        or layout not in ((8, 8), (16, 12))
    ):
        raise refuse(f"grey image {photometric} {layout[1]} in {layout[0]} bits not supported")
    count = rows * columns * samples
    data = item.PixelData
    if rows < 1 or columns < 1 or len(data) < count * layout[0] // 8:
        raise refuse(f"{len(data)} bytes of pixel data for {rows}x{columns}")
    if color:
        flat = np.frombuffer(data, dtype=np.uint8, count=count)
        if int(item.get("PlanarConfiguration", 1)) == 1:
            rgb = flat.reshape(3, rows, columns).transpose(1, 2, 0)
        else:
            rgb = flat.reshape(rows, columns, 3)
        return np.ascontiguousarray(rgb), 8
    wire, native = (np.uint8, np.uint8) if layout[0] == 8 else (np.dtype("<u2"), np.uint16)
    grey = np.frombuffer(data, dtype=wire, count=count).astype(native).reshape(rows, columns)
    bits = layout[1]
    top = native((1 << bits) - 1)
    grey &= top  # bits above High Bit are not part of the pixel (PS3.5 8.1.1)
    if photometric == "MONOCHROME1":
        grey = top - grey
    return grey, bits


def film_for(session: FilmSessionState, box: FilmBoxState, annotations: list[str]) -> Film:
    """The film that printing ``box`` of ``session`` makes."""
    s, b = session.attributes, box.attributes
    return Film(
        display_format=read_text(b, "ImageDisplayFormat", _FILM.display_format),
        film_size=read_text(b, "FilmSizeID", _FILM.film_size),
        orientation=read_text(b, "FilmOrientation", _FILM.orientation),
        magnification=read_text(b, "MagnificationType", _FILM.magnification),
        smoothing=read_text(b, "SmoothingType", _FILM.smoothing),
        border_density=read_text(b, "BorderDensity", _FILM.border_density),
        empty_image_density=read_text(b, "EmptyImageDensity", _FILM.empty_image_density),
        min_density=read_int(b, "MinDensity") or _FILM.min_density,
        max_density=read_int(b, "MaxDensity") or _FILM.max_density,
        trim=read_text(b, "Trim", _FILM.trim),
        presentation_lut_shape=box.lut_shape or session.lut_shape or _FILM.presentation_lut_shape,
        copies=read_int(s, "NumberOfCopies") or _FILM.copies,
        priority=read_text(s, "PrintPriority", _FILM.priority),
        medium=read_text(s, "MediumType", _FILM.medium),
        destination=read_text(s, "FilmDestination", _FILM.destination),
        label=read_text(s, "FilmSessionLabel", _FILM.label),
        annotations=list(annotations),
        images=box.images,
    )


def known_vr(keyword: str) -> str:
    """The VR the data dictionary gives ``keyword`` (for elements sent without a value)."""
    return dictionary_VR(tag_of(keyword))
