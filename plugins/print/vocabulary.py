"""Everything DICOM Basic Grayscale / Basic Color Print Management lets a film carry, and
the checks both halves of the print plugin run on it.

The print SCU checks its own requests with these functions before it sends them (a job
the printer would refuse fails at once, not after five retries); the print SCP runs the
same checks on what a modality sends and answers with the ``status`` each ``Problem``
carries. The values are the union of what the product's seeds use (seed 000 §5.1, seed
001 §5.10, seed 002 §5.10, seed 004 B5) and of PS3.3 C.13 / PS3.4 H; where a seed uses
a value the standard does not define, the comment says which seed and why it is kept.

Also here, as data: what a print SCP's DIMSE status means for a job (``outcome``), and
what a printer's Printer Status / Printer Status Info means for the operator and the
queue (``describe_printer``, after seed 004's Tables 142/143).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# --------------------------------------------------------------------------------------
# SOP classes (PS3.4 H.3, H.4; PS3.6 Annex A)
# --------------------------------------------------------------------------------------

BASIC_FILM_SESSION = "1.2.840.10008.5.1.1.1"
BASIC_FILM_BOX = "1.2.840.10008.5.1.1.2"
BASIC_GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
BASIC_COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
BASIC_GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
BASIC_COLOR_PRINT_META = "1.2.840.10008.5.1.1.18"
# Print Job: seed 001 polls it with N-GET, seeds 002/004 take its N-EVENT-REPORTs.
PRINT_JOB = "1.2.840.10008.5.1.1.14"
# Basic Annotation Box: optional in PS3.4 H.3.3.2; no seed uses it.
BASIC_ANNOTATION_BOX = "1.2.840.10008.5.1.1.15"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"  # the Printer's well-known SOP instance
# Presentation LUT: seeds 002/004 create one (IDENTITY). Seed 002's Table 4-27 prints it
# as ...5.1.1.2, a text-extraction slip; its Table 8-2 has the right UID.
PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"

# The image box class the SCP creates for each meta class (PS3.4 H.4.2.2.1.3).
IMAGE_BOX_FOR_META: Mapping[str, str] = MappingProxyType(
    {
        BASIC_GRAYSCALE_PRINT_META: BASIC_GRAYSCALE_IMAGE_BOX,
        BASIC_COLOR_PRINT_META: BASIC_COLOR_IMAGE_BOX,
    }
)

PRINT_ACTION_ID = 1  # Action Type ID "Print" of Film Session and Film Box N-ACTION
PRINTER_EVENTS: Mapping[int, str] = MappingProxyType({1: "NORMAL", 2: "WARNING", 3: "FAILURE"})
PRINT_JOB_EVENTS: Mapping[int, str] = MappingProxyType(
    {1: "PENDING", 2: "PRINTING", 3: "DONE", 4: "FAILURE"}
)
EXECUTION_STATUSES = ("PENDING", "PRINTING", "DONE", "FAILURE")  # Execution Status (2100,0020)

# --------------------------------------------------------------------------------------
# Film Session (PS3.3 C.13.1, PS3.4 H.4.1)
# --------------------------------------------------------------------------------------

# Number of Copies: seed 000 allows 1..99 and rejects 0 and 100 before sending; seed 001
# says only "> 0"; seeds 002/004 always send 1. 99 is kept as the ceiling: no seed goes
# above it and an SCP that took 10 000 copies of a film would be a hazard.
COPIES_RANGE = (1, 99)
PRIORITIES = ("HIGH", "MED", "LOW")  # seeds 000, 001; PS3.3 Enumerated Values
# PS3.3 Defined Terms, all used by seeds 002/004; seed 001 uses the two films only.
# "CURRENT" is seed 000's own (whatever the printer has loaded): not a DICOM term, kept
# because seed 000 sends it; a template that leaves it out refuses it.
MEDIUM_TYPES = (
    "PAPER",
    "CLEAR FILM",
    "BLUE FILM",
    "MAMMO CLEAR FILM",
    "MAMMO BLUE FILM",
    "CURRENT",
)
# Seed 000: PROCESSOR, MAGAZINE; seed 001: PROCESSOR. PS3.3 C.13.1 also defines BIN_i, an
# output bin i of the printer; FILM_DESTINATION_BIN matches those.
FILM_DESTINATIONS = ("MAGAZINE", "PROCESSOR")
FILM_DESTINATION_BIN = re.compile(r"BIN_[1-9][0-9]*")
FILM_SESSION_LABEL_MAX = 64  # LO; seed 000 sends an incrementing integer
OWNER_ID_MAX = 16  # SH

# --------------------------------------------------------------------------------------
# Film Box (PS3.3 C.13.3, PS3.4 H.4.2)
# --------------------------------------------------------------------------------------

ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
# PS3.3 Defined Terms. Seeds 000 and 002/004 list the 8 without 8_5INX11IN/11INX17IN;
# seed 001 lists those 10; A4 and A3 are the standard's.
FILM_SIZES = (
    "8INX10IN",
    "8_5INX11IN",
    "10INX12IN",
    "10INX14IN",
    "11INX14IN",
    "11INX17IN",
    "14INX14IN",
    "14INX17IN",
    "24CMX24CM",
    "24CMX30CM",
    "A4",
    "A3",
)
MAGNIFICATIONS = ("REPLICATE", "BILINEAR", "CUBIC", "NONE")  # every seed; PS3.3 Defined Terms
# Smoothing Type has no standard values: the printer's conformance statement defines
# them, and they mean something only with Magnification Type CUBIC (PS3.3 C.13.3, seed
# 001). A template may list the ones its printer takes; otherwise any CS value passes.
SMOOTHING: tuple[str, ...] = ()
# Border Density and Empty Image Density: BLACK or WHITE (seeds 000, 001, 002/004), or
# PS3.3's density in hundredths of optical density as a number, e.g. "150".
DENSITY_WORDS = ("BLACK", "WHITE")
# Min/Max Density, and a numeric border/empty density, in hundredths of OD. Seed 000
# bounds both by 0..1000; seed 001 says min >= 0 and max > 0; seeds 002/004 say max > 0
# and 0 < min < 50. The union is 0..1000 (10.0 OD is beyond any film, so the ceiling
# costs nothing); a printer's own range comes from its template.
DENSITY_RANGE = (0, 1000)
TRIM = ("YES", "NO")
REQUESTED_RESOLUTIONS = ("STANDARD", "HIGH")  # Requested Resolution ID (2020,0050)
# Illumination and Reflected Ambient Light in cd/m2: seeds 002/004 say "0 < value"; US.
# PS3.4 H.4.2.2.1 recommends 2000 and 10 for transmissive film when absent.
ILLUMINATION_RANGE = (1, 65535)
REFLECTED_AMBIENT_LIGHT_RANGE = (1, 65535)
CONFIGURATION_INFORMATION_MAX = 1024  # ST; printer-specific (seed 001 uses CS000-CS999)

# Image Display Format (PS3.3 C.13.3): STANDARD\C,R is C columns by R rows; ROW\r1,r2,...
# gives the number of images in each row, COL\c1,c2,... in each column. SLIDE,
# SUPERSLIDE and CUSTOM\i are laid out as the printer's conformance statement says, so
# their number of positions cannot be known from the text: they are accepted only when a
# template names them with a count (Capabilities.custom_formats).
DISPLAY_FORMAT_KINDS = ("STANDARD", "ROW", "COL", "SLIDE", "SUPERSLIDE", "CUSTOM")

# --------------------------------------------------------------------------------------
# Image Box (PS3.3 C.13.5, PS3.4 H.4.3)
# --------------------------------------------------------------------------------------

POLARITIES = ("NORMAL", "REVERSE")
DECIMATE_CROP = ("DECIMATE", "CROP", "FAIL")  # Requested Decimate/Crop Behavior (2020,0040)
# Seeds send MONOCHROME2 only; PS3.3 C.13.5 allows both.
GRAYSCALE_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
# (Bits Allocated, Bits Stored): 8/8 every seed; 16/12 seeds 002/004 and PS3.3 C.13.5.
GRAYSCALE_BITS = ((8, 8), (16, 12))
COLOR_PHOTOMETRICS = ("RGB",)
COLOR_BITS = ((8, 8),)
# PS3.3 C.13.5 (Basic Color Image Sequence) and PS3.4 H.4.3.2: Planar Configuration 1,
# colour-by-plane. Seeds 002/004 send 0 (colour-by-pixel) all the same; an SCP that
# wants to take their films passes ``allow_planar_0=True`` to check_image_box. Seed 001
# writes Samples per Pixel 1 for its colour box, a slip for the standard's 3.
COLOR_PLANAR_CONFIGURATION = 1

# --------------------------------------------------------------------------------------
# Presentation LUT (PS3.3 C.11.4, PS3.4 H.4.9)
# --------------------------------------------------------------------------------------

# Seeds 002/004 use IDENTITY. INVERSE is a softcopy shape (C.11.6), not a print one.
PRESENTATION_LUT_SHAPES = ("IDENTITY", "LIN OD")

# --------------------------------------------------------------------------------------
# Printer (PS3.3 C.13.9)
# --------------------------------------------------------------------------------------

PRINTER_STATUSES = ("NORMAL", "WARNING", "FAILURE")
# What a Printer Status of WARNING does to a job: seed 000 treats it as FAILURE and never
# creates the film session ("fail"); seeds 002 and 004 print on and show it as a status
# to act on soon, seed 001 logs warnings and goes on ("continue", the standard's
# meaning and the default).
WARNING_POLICY = ("continue", "fail")
DEFAULT_WARNING_POLICY = "continue"

# DIMSE status codes a checker suggests for the answer to a bad request (PS3.4 H.2.4).
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
DENSITY_OUT_OF_RANGE = 0xB605  # warning: the printer uses its own min/max instead


# ======================================================================================
# Image Display Format
# ======================================================================================


@dataclass(frozen=True)
class DisplayFormat:
    """A parsed Image Display Format.

    ``counts`` holds STANDARD's (columns, rows), ROW's images per row, COL's images per
    column, or, for a printer-defined layout, its number of positions."""

    text: str
    kind: str  # STANDARD | ROW | COL | SLIDE | SUPERSLIDE | CUSTOM
    counts: tuple[int, ...]

    @property
    def positions(self) -> int:
        """How many image boxes the film box has (PS3.4 H.4.2.2.1.3)."""
        if self.kind == "STANDARD":
            return self.counts[0] * self.counts[1]
        return sum(self.counts)

    @property
    def columns(self) -> int:
        """Columns of the grid the layout needs; 0 when the printer defines the layout."""
        if self.kind == "STANDARD":
            return self.counts[0]
        if self.kind == "ROW":
            return max(self.counts)
        if self.kind == "COL":
            return len(self.counts)
        return 0

    @property
    def rows(self) -> int:
        """Rows of the grid the layout needs; 0 when the printer defines the layout."""
        if self.kind == "STANDARD":
            return self.counts[1]
        if self.kind == "ROW":
            return len(self.counts)
        if self.kind == "COL":
            return max(self.counts)
        return 0


_COUNTS = re.compile(r"[1-9][0-9]*(,[1-9][0-9]*)*")


class DisplayFormatError(ValueError):
    """An Image Display Format that cannot be used; ``reason`` says why."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"Image Display Format {text!r}: {reason}")
        self.reason = reason


def parse_display_format(value: str, custom: Mapping[str, int] | None = None) -> DisplayFormat:
    """Parse an Image Display Format (2010,0010) such as ``STANDARD\\2,3``.

    ``custom`` names the printer-defined layouts (``SLIDE``, ``SUPERSLIDE``,
    ``CUSTOM\\i``) a printer takes, with their number of positions; without it they are
    refused, since nothing else tells how many image boxes they have. Raises
    DisplayFormatError (a ValueError) with the reason for anything else."""
    if not isinstance(value, str):
        raise DisplayFormatError(repr(value), f"must be text, not {type(value).__name__}")
    text = value.strip(" \x00")  # DICOM pads to even length with a space
    if not text:
        raise DisplayFormatError(text, "is empty")
    kind, sep, rest = text.partition("\\")
    if kind not in ("STANDARD", "ROW", "COL"):
        if custom and text in custom:
            named = kind if kind in DISPLAY_FORMAT_KINDS else "CUSTOM"
            return DisplayFormat(text, named, (custom[text],))
        if (kind in ("SLIDE", "SUPERSLIDE") and not sep) or (kind == "CUSTOM" and rest.isdigit()):
            raise DisplayFormatError(
                text,
                "the printer defines this layout; it is accepted only if the printer's "
                "template names it with its number of positions",
            )
        raise DisplayFormatError(
            text,
            "not STANDARD\\C,R, ROW\\r1,r2,... or COL\\c1,c2,... "
            "(PS3.3 C.13.3; upper case, no spaces)",
        )
    if not sep or not _COUNTS.fullmatch(rest):
        raise DisplayFormatError(
            text,
            f"{kind} must be followed by a backslash and positive whole numbers "
            "separated by commas",
        )
    counts = tuple(int(part) for part in rest.split(","))
    if kind == "STANDARD" and len(counts) != 2:
        raise DisplayFormatError(
            text, "STANDARD takes two numbers, columns and rows (STANDARD\\C,R)"
        )
    return DisplayFormat(text, kind, counts)


def positions(value: str, custom: Mapping[str, int] | None = None) -> int:
    """The number of image positions of an Image Display Format (ValueError if invalid):
    ``STANDARD\\2,3`` has 6, ``ROW\\2,3`` 5, ``COL\\1,2`` 3."""
    return parse_display_format(value, custom).positions


# ======================================================================================
# Printer templates
# ======================================================================================


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(str(v) for v in values)


@dataclass(frozen=True)
class Capabilities:
    """What one printer model supports: seed 000's Printer Template.

    The sets hold the values the printer takes; they may go beyond this module's defined
    terms, since PS3.3 lets a printer extend Defined Terms, and a template names what
    its printer's conformance statement says. ``None`` for ``film_destinations`` and
    ``smoothing_types`` means any valid value. Display formats are bounded by
    ``max_columns``/``max_rows`` (STANDARD's C and R, a ROW's length, a COL's height) or,
    when ``display_formats`` is given, limited to exactly those. ``min_density`` and
    ``max_density`` are the printer's range in hundredths of OD; ``bits`` the grey depth
    it takes (8 or 12); ``dpi`` its resolution, for true-size layout."""

    name: str = "generic"
    film_sizes: frozenset[str] = frozenset(FILM_SIZES)
    medium_types: frozenset[str] = frozenset(MEDIUM_TYPES)
    film_destinations: frozenset[str] | None = None
    magnifications: frozenset[str] = frozenset(MAGNIFICATIONS)
    smoothing_types: frozenset[str] | None = None
    max_columns: int = 10
    max_rows: int = 10
    display_formats: frozenset[str] | None = None
    custom_formats: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    min_density: int = DENSITY_RANGE[0]
    max_density: int = DENSITY_RANGE[1]
    color: bool = True
    bits: int = 12
    dpi: int = 300

    def __post_init__(self) -> None:
        # Accept lists and tuples from configuration; keep the instance immutable.
        for name in (
            "film_sizes",
            "medium_types",
            "magnifications",
            "film_destinations",
            "smoothing_types",
            "display_formats",
        ):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "custom_formats", MappingProxyType(dict(self.custom_formats)))
        if self.max_columns < 1 or self.max_rows < 1:
            raise ValueError(f"printer template {self.name!r}: max_columns/max_rows below 1")
        if any(count < 1 for count in self.custom_formats.values()):
            raise ValueError(f"printer template {self.name!r}: a custom format without positions")
        lo, hi = DENSITY_RANGE
        if not lo <= self.min_density < self.max_density <= hi:
            raise ValueError(
                f"printer template {self.name!r}: densities {self.min_density}..."
                f"{self.max_density} not within {lo}..{hi} with min < max"
            )
        if self.bits not in (8, 12):
            raise ValueError(f"printer template {self.name!r}: bits must be 8 or 12")
        if self.dpi < 1:
            raise ValueError(f"printer template {self.name!r}: dpi must be positive")
        for text in self.display_formats or ():
            parse_display_format(text, self.custom_formats)  # fail on load, not on a job

    @classmethod
    def of(
        cls,
        name: str = "generic",
        film_sizes: Iterable[str] = (),
        medium_types: Iterable[str] = (),
        magnifications: Iterable[str] = (),
        **others: Any,
    ) -> Capabilities:
        """A template from configuration lists, where an empty list means everything
        the standard defines (as the ``[[printer_template]]`` section has it)."""
        return cls(
            name=name,
            film_sizes=frozenset(film_sizes) or frozenset(FILM_SIZES),
            medium_types=frozenset(medium_types) or frozenset(MEDIUM_TYPES),
            magnifications=frozenset(magnifications) or frozenset(MAGNIFICATIONS),
            **others,
        )


# Everything in this vocabulary, up to 10 x 10 images, colour, 8 or 12 bits.
GENERIC = Capabilities()


# ======================================================================================
# Validators
# ======================================================================================


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a print request.

    ``status`` is the DIMSE status an SCP answers it with (PS3.4 H.2.4): 0106 invalid
    value, 0120 missing attribute, 0121 missing value, or the warning B605 for a density
    outside the printer's range, which a printer may clamp instead of refusing."""

    keyword: str
    tag: int
    value: Any
    message: str
    status: int = INVALID_ATTRIBUTE_VALUE

    @property
    def is_warning(self) -> bool:
        """True when an SCP may go on with its own value (a warning status)."""
        return self.status in (0x0107, 0x0116) or 0xB000 <= self.status <= 0xBFFF

    def __str__(self) -> str:
        return self.message


_ABSENT = object()


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Checks:
    """Collects the problems of one dataset, naming each attribute the same way."""

    def __init__(self, ds: Dataset, where: str = "") -> None:
        self.ds = ds
        self.where = where  # e.g. "Basic Grayscale Image Sequence > " for nested items
        self.problems: list[Problem] = []

    def add(
        self, keyword: str, value: Any, reason: str, status: int = INVALID_ATTRIBUTE_VALUE
    ) -> None:
        tag = tag_for_keyword(keyword) or 0
        name = dictionary_description(tag) if tag else keyword
        shown = "" if value is _ABSENT or value is None else f" {_show(value)}"
        message = f"{self.where}{name} {_tag_text(tag)}{shown}: {reason}"
        kept = None if value is _ABSENT else value
        self.problems.append(Problem(keyword, tag, kept, message, status))

    def value(self, keyword: str) -> Any:
        """The attribute's value; _ABSENT if not there; None if empty (zero length)."""
        if keyword not in self.ds:
            return _ABSENT
        try:
            value = self.ds[keyword].value
        except (ValueError, TypeError, KeyError) as exc:  # an undecodable value
            self.add(keyword, _ABSENT, f"cannot be read ({exc})")
            return _ABSENT
        if value is None or value == "" or (isinstance(value, bytes) and not value):
            return None
        return value

    def required(self, keyword: str) -> Any:
        value = self.value(keyword)
        if value is _ABSENT:
            self.add(keyword, _ABSENT, "is required", MISSING_ATTRIBUTE)
        elif value is None:
            self.add(keyword, value, "has no value", MISSING_ATTRIBUTE_VALUE)
        return value

    def single(self, keyword: str, value: Any) -> Any:
        """The one value of ``value``; reports a multi-valued attribute and gives _ABSENT."""
        if isinstance(value, MultiValue | list | tuple):
            if len(value) != 1:
                self.add(keyword, list(value), "takes exactly one value")
                return _ABSENT
            return value[0]
        return value

    def term(
        self,
        keyword: str,
        allowed: Iterable[str],
        supported: Iterable[str] | None = None,
        printer: str = "",
        value: Any = _ABSENT,
    ) -> str | None:
        """Check a code string against defined terms ``allowed``, or, when ``supported``
        is given, against what the printer template ``printer`` takes instead."""
        if value is _ABSENT:
            value = self.value(keyword)
        if value is _ABSENT or value is None:
            return None
        value = self.single(keyword, value)
        if value is _ABSENT:
            return None
        text = str(value).strip()
        if supported is not None:
            if text in supported:
                return text
            if text in allowed:
                self.add(
                    keyword,
                    text,
                    f"not supported by printer {printer!r} (it takes {_choices(supported)})",
                )
                return None
        elif text in allowed:
            return text
        self.add(keyword, text, f"not one of {_choices(allowed)}")
        return None

    def integer(
        self, keyword: str, low: int, high: int, value: Any = _ABSENT, required: bool = False
    ) -> int | None:
        """Check a whole number in ``low``..``high``; returns it if valid."""
        if value is _ABSENT:
            value = self.required(keyword) if required else self.value(keyword)
        if value is _ABSENT or value is None:
            return None
        value = self.single(keyword, value)
        if value is _ABSENT:
            return None
        number = _as_int(value)
        if number is None:
            self.add(keyword, value, "is not a whole number")
            return None
        if not low <= number <= high:
            self.add(keyword, number, f"out of range {low}..{high}")
            return None
        return number

    def text(self, keyword: str, limit: int) -> None:
        value = self.value(keyword)
        if value is _ABSENT or value is None:
            return
        if len(str(value)) > limit:
            self.add(keyword, value, f"longer than {limit} characters")

    def code_string(self, keyword: str) -> str | None:
        """Free code strings (smoothing, annotation format): PS3.5 CS syntax only."""
        value = self.value(keyword)
        if value is _ABSENT or value is None:
            return None
        value = self.single(keyword, value)
        if value is _ABSENT:
            return None
        text = str(value).strip()
        if not _CS.fullmatch(text):
            self.add(keyword, text, "not a code string (up to 16 of A-Z, 0-9, space, _)")
            return None
        return text

    def reference(self, keyword: str, sop_class: str, required: bool = False) -> None:
        """A sequence of exactly one reference to an instance of ``sop_class``."""
        value = self.required(keyword) if required else self.value(keyword)
        if value is _ABSENT or value is None:
            return
        if len(value) != 1:
            self.add(keyword, _ABSENT, f"must hold exactly one item, has {len(value)}")
            return
        item = value[0]
        ref_class = str(item.get("ReferencedSOPClassUID", "") or "")
        if ref_class != sop_class:
            self.add(keyword, _ABSENT, f"must reference SOP class {sop_class}, not {ref_class!r}")
        if not str(item.get("ReferencedSOPInstanceUID", "") or ""):
            self.add(keyword, _ABSENT, "has no Referenced SOP Instance UID", MISSING_ATTRIBUTE)


_CS = re.compile(r"[A-Z0-9 _]{1,16}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(values: Iterable[str]) -> str:
    """The values for a message, in the vocabulary's order (8INX10IN before 14INX17IN)."""
    ordered = sorted(values, key=lambda value: (_ORDER.get(value, len(_ORDER)), value))
    return ", ".join(ordered) if ordered else "nothing"


_ORDER = {
    term: number
    for number, term in enumerate(
        FILM_SIZES + MEDIUM_TYPES + FILM_DESTINATIONS + MAGNIFICATIONS + PRIORITIES
    )
}


def _as_int(value: Any) -> int | None:
    """A DICOM IS/US value as an int, or None if it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    return None


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_film_session(ds: Dataset, capabilities: Capabilities | None = None) -> list[Problem]:
    """Check a Basic Film Session N-CREATE or N-SET (PS3.4 H.4.1.2.1).

    Every attribute is optional; one that is present must hold an allowed value. With
    ``capabilities`` (default GENERIC), Medium Type and Film Destination must be ones
    the printer takes."""
    caps = capabilities or GENERIC
    checks = _Checks(ds)
    checks.integer("NumberOfCopies", *COPIES_RANGE)
    checks.term("PrintPriority", PRIORITIES)
    checks.term("MediumType", MEDIUM_TYPES, caps.medium_types, caps.name)
    destination = checks.value("FilmDestination")
    if destination not in (_ABSENT, None):
        destination = checks.single("FilmDestination", destination)
    if destination not in (_ABSENT, None):
        text = str(destination).strip()
        if not (text in FILM_DESTINATIONS or FILM_DESTINATION_BIN.fullmatch(text)):
            checks.add("FilmDestination", text, "not one of MAGAZINE, PROCESSOR or BIN_i")
        elif caps.film_destinations is not None and text not in caps.film_destinations:
            checks.add(
                "FilmDestination",
                text,
                f"not supported by printer {caps.name!r} "
                f"(it takes {_choices(caps.film_destinations)})",
            )
    checks.text("FilmSessionLabel", FILM_SESSION_LABEL_MAX)
    checks.integer("MemoryAllocation", 0, 2**31 - 1)
    checks.text("OwnerID", OWNER_ID_MAX)
    return checks.problems


def _check_densities(checks: _Checks, caps: Capabilities) -> None:
    """Min/Max Density: each in range, min below max, and inside the printer's range
    (outside it the SCP answers warning B605 and uses its own, PS3.4 H.4.2.2.1.2)."""
    low = checks.integer("MinDensity", *DENSITY_RANGE)
    high = checks.integer("MaxDensity", *DENSITY_RANGE)
    if low is not None and high is not None and low >= high:
        checks.add("MinDensity", low, f"must be below Max Density {high}")
        return
    if low is not None and low < caps.min_density:
        checks.add(
            "MinDensity",
            low,
            f"below printer {caps.name!r}'s minimum {caps.min_density}",
            DENSITY_OUT_OF_RANGE,
        )
    if high is not None and high > caps.max_density:
        checks.add(
            "MaxDensity",
            high,
            f"above printer {caps.name!r}'s maximum {caps.max_density}",
            DENSITY_OUT_OF_RANGE,
        )


def _check_density_word(checks: _Checks, keyword: str) -> None:
    """Border/Empty Image Density: BLACK, WHITE or hundredths of OD (PS3.3 C.13.3)."""
    value = checks.value(keyword)
    if value is _ABSENT or value is None:
        return
    value = checks.single(keyword, value)
    if value is _ABSENT:
        return
    text = str(value).strip()
    if text in DENSITY_WORDS:
        return
    if _as_int(text) is None:
        checks.add(keyword, text, "not BLACK, WHITE or a density in hundredths of OD")
        return
    checks.integer(keyword, *DENSITY_RANGE, value=text)


def _check_magnification(checks: _Checks, caps: Capabilities) -> None:
    magnification = checks.term("MagnificationType", MAGNIFICATIONS, caps.magnifications, caps.name)
    smoothing = checks.code_string("SmoothingType")
    if smoothing is None:
        return
    if caps.smoothing_types is not None and smoothing not in caps.smoothing_types:
        checks.add(
            "SmoothingType",
            smoothing,
            f"not supported by printer {caps.name!r} (it takes {_choices(caps.smoothing_types)})",
        )
    # PS3.3 C.13.3 and seed 001: Smoothing Type only goes with Magnification Type CUBIC.
    # Without a magnification in the same request it may refine the film box's.
    if magnification is not None and magnification != "CUBIC":
        checks.add("SmoothingType", smoothing, f"only valid with CUBIC, not {magnification}")


def check_film_box(
    ds: Dataset, capabilities: Capabilities | None = None, n_create: bool = True
) -> list[Problem]:
    """Check a Basic Film Box N-CREATE (or, with ``n_create=False``, an N-SET).

    N-CREATE requires Image Display Format and Referenced Film Session Sequence (both
    M/M in PS3.4 H.4.2.2.1); every other attribute is optional but must hold an allowed
    value when present, Min Density below Max Density. ``capabilities`` (default
    GENERIC, which allows up to 10 x 10 images) also refuses what the printer lacks."""
    caps = capabilities or GENERIC
    checks = _Checks(ds)
    if n_create:
        layout = checks.required("ImageDisplayFormat")
        checks.reference("ReferencedFilmSessionSequence", BASIC_FILM_SESSION, required=True)
    elif "ImageDisplayFormat" in ds:  # PS3.4 H.4.2.2.2: not among the N-SET attributes
        checks.add("ImageDisplayFormat", _ABSENT, "cannot be changed by N-SET", NO_SUCH_ATTRIBUTE)
        layout = _ABSENT
    else:
        layout = _ABSENT
    if layout is not _ABSENT and layout is not None:
        _check_layout(checks, str(layout), caps)
    checks.code_string("AnnotationDisplayFormatID")
    checks.term("FilmOrientation", ORIENTATIONS)
    checks.term("FilmSizeID", FILM_SIZES, caps.film_sizes, caps.name)
    _check_magnification(checks, caps)
    _check_density_word(checks, "BorderDensity")
    _check_density_word(checks, "EmptyImageDensity")
    _check_densities(checks, caps)
    checks.term("Trim", TRIM)
    checks.text("ConfigurationInformation", CONFIGURATION_INFORMATION_MAX)
    checks.integer("Illumination", *ILLUMINATION_RANGE)
    checks.integer("ReflectedAmbientLight", *REFLECTED_AMBIENT_LIGHT_RANGE)
    checks.term("RequestedResolutionID", REQUESTED_RESOLUTIONS)
    checks.reference("ReferencedPresentationLUTSequence", PRESENTATION_LUT)
    return checks.problems


def _check_layout(checks: _Checks, text: str, caps: Capabilities) -> None:
    try:
        layout = parse_display_format(text, caps.custom_formats)
    except DisplayFormatError as exc:
        checks.add("ImageDisplayFormat", text, exc.reason)
        return
    if caps.display_formats is not None:
        if layout.text not in caps.display_formats:
            checks.add(
                "ImageDisplayFormat",
                layout.text,
                f"not supported by printer {caps.name!r} "
                f"(it takes {_choices(caps.display_formats)})",
            )
        return
    if layout.kind in ("STANDARD", "ROW", "COL") and (
        layout.columns > caps.max_columns or layout.rows > caps.max_rows
    ):
        checks.add(
            "ImageDisplayFormat",
            layout.text,
            f"needs {layout.columns} columns x {layout.rows} rows; printer {caps.name!r} "
            f"makes at most {caps.max_columns} x {caps.max_rows}",
        )


def check_image_box(
    ds: Dataset,
    color: bool,
    positions: int,
    *,
    capabilities: Capabilities | None = None,
    allow_planar_0: bool = False,
) -> list[Problem]:
    """Check a Basic Grayscale (``color=False``) or Basic Color Image Box N-SET
    (PS3.4 H.4.3.1.2.1 / H.4.3.2.2.1) for a film box of ``positions`` image boxes.

    The image must come in the sequence of its kind, never the other: grayscale in
    Basic Grayscale Image Sequence as MONOCHROME1/2, one sample, 8 of 8 or 12 of 16
    bits; colour in Basic Color Image Sequence as RGB, three samples, 8 of 8 bits,
    Planar Configuration 1 (0 too with ``allow_planar_0``, for seeds 002/004). High Bit
    is Bits Stored - 1, Pixel Representation 0, Rows and Columns above 0, and Pixel
    Data exactly as long as they say (plus one pad byte if odd). An empty sequence is
    valid: it erases the image box (PS3.4 H.4.3.1.2.1.3)."""
    caps = capabilities or GENERIC
    checks = _Checks(ds)
    checks.integer("ImageBoxPosition", 1, max(positions, 1), required=True)
    wanted, other = (
        ("BasicColorImageSequence", "BasicGrayscaleImageSequence")
        if color
        else ("BasicGrayscaleImageSequence", "BasicColorImageSequence")
    )
    kind = "colour" if color else "grayscale"
    if other in ds:
        checks.add(other, _ABSENT, f"not allowed in a {kind} image box")
    if color and not caps.color:
        checks.add(wanted, _ABSENT, f"printer {caps.name!r} does not print colour")
    images = checks.required(wanted)
    if images is not _ABSENT and images is not None:
        if len(images) > 1:
            checks.add(wanted, _ABSENT, f"must hold one image, has {len(images)}")
        elif len(images) == 1:
            where = f"{dictionary_description(tag_for_keyword(wanted))} > "
            item = _Checks(images[0], where)
            _check_pixels(item, color, caps, allow_planar_0)
            checks.problems += item.problems
    checks.term("Polarity", POLARITIES)
    _check_magnification(checks, caps)
    _check_densities(checks, caps)  # grayscale image box Min/Max Density (H.4.3.1.2.1)
    checks.text("ConfigurationInformation", CONFIGURATION_INFORMATION_MAX)
    size = checks.value("RequestedImageSize")
    if size is not _ABSENT and size is not None:
        millimetres = _as_float(checks.single("RequestedImageSize", size))
        if millimetres is None or millimetres <= 0:
            checks.add("RequestedImageSize", size, "must be a width in mm above 0")
    checks.term("RequestedDecimateCropBehavior", DECIMATE_CROP)
    checks.reference("ReferencedPresentationLUTSequence", PRESENTATION_LUT)
    return checks.problems


def _check_pixels(item: _Checks, color: bool, caps: Capabilities, allow_planar_0: bool) -> None:
    """The pixel description and Pixel Data of one Basic Grayscale/Color Image item."""
    samples = item.integer("SamplesPerPixel", 0, 65535, required=True)
    wanted_samples = 3 if color else 1
    if samples is not None and samples != wanted_samples:
        item.add("SamplesPerPixel", samples, f"must be {wanted_samples}")
    photometrics = COLOR_PHOTOMETRICS if color else GRAYSCALE_PHOTOMETRICS
    if item.required("PhotometricInterpretation") not in (_ABSENT, None):
        item.term("PhotometricInterpretation", photometrics)
    if color:
        planar = item.integer("PlanarConfiguration", 0, 65535, required=True)
        accepted = (0, 1) if allow_planar_0 else (COLOR_PLANAR_CONFIGURATION,)
        if planar is not None and planar not in accepted:
            item.add("PlanarConfiguration", planar, f"must be {' or '.join(map(str, accepted))}")
    elif "PlanarConfiguration" in item.ds:  # PS3.3 C.7.6.3: not with one sample
        item.add("PlanarConfiguration", _ABSENT, "only belongs to colour images", 0x0107)
    rows = item.integer("Rows", 1, 65535, required=True)
    columns = item.integer("Columns", 1, 65535, required=True)
    ratio = item.value("PixelAspectRatio")
    if ratio is not _ABSENT and ratio is not None:
        parts = list(ratio) if isinstance(ratio, MultiValue | list | tuple) else [ratio]
        numbers = [_as_int(part) for part in parts]
        if len(numbers) != 2 or any(n is None or n < 1 for n in numbers):
            item.add("PixelAspectRatio", parts, "must be two positive whole numbers")
    allocated = item.integer("BitsAllocated", 1, 64, required=True)
    stored = item.integer("BitsStored", 1, 64, required=True)
    high = item.integer("HighBit", 0, 63, required=True)
    representation = item.integer("PixelRepresentation", 0, 1, required=True)
    if representation == 1:
        item.add("PixelRepresentation", 1, "must be 0 (unsigned)")
    bits_ok = False
    if allocated is not None and stored is not None:
        pairs = COLOR_BITS if color else GRAYSCALE_BITS
        if (allocated, stored) not in pairs:
            shown = " or ".join(f"{s} of {a}" for a, s in pairs)
            item.add("BitsStored", stored, f"with Bits Allocated {allocated}: must be {shown}")
        elif not color and stored > caps.bits:
            item.add("BitsStored", stored, f"printer {caps.name!r} takes {caps.bits} bits")
        else:
            bits_ok = True
        if high is not None and high != stored - 1:
            item.add("HighBit", high, f"must be Bits Stored - 1 = {stored - 1}")
    pixels = item.required("PixelData")
    if pixels in (_ABSENT, None) or not bits_ok:
        return
    if None in (rows, columns, samples) or samples != wanted_samples or allocated is None:
        return
    expected = rows * columns * samples * (allocated // 8)
    length = len(pixels)
    if length != expected and not (expected % 2 and length == expected + 1):
        item.add(
            "PixelData",
            pixels,
            f"is {length} bytes; {rows} x {columns} x {samples} samples of "
            f"{allocated} bits need {expected}",
        )


def check_presentation_lut(ds: Dataset) -> list[Problem]:
    """Check a Presentation LUT N-CREATE (PS3.4 H.4.9.2.1): a Presentation LUT Shape
    from PRESENTATION_LUT_SHAPES or a Presentation LUT Sequence, not both."""
    checks = _Checks(ds)
    has_sequence = checks.value("PresentationLUTSequence") not in (_ABSENT, None)
    has_shape = checks.value("PresentationLUTShape") not in (_ABSENT, None)
    if has_sequence and has_shape:
        checks.add("PresentationLUTShape", _ABSENT, "not allowed with a Presentation LUT Sequence")
    elif not has_sequence and not has_shape:
        checks.add(
            "PresentationLUTShape",
            _ABSENT,
            "or a Presentation LUT Sequence is required",
            MISSING_ATTRIBUTE,
        )
    else:
        checks.term("PresentationLUTShape", PRESENTATION_LUT_SHAPES)
    return checks.problems


# ======================================================================================
# DIMSE status of a print SCP's answers
# ======================================================================================


class Outcome(enum.Enum):
    """What a print SCU does with a status: go on, go on and report, give up on the job,
    or give up on this attempt and let the job's retries (5 x 180 s by default, seed
    001) try again."""

    CONTINUE = "continue"
    WARN = "warn"
    FAIL = "fail"
    RETRY = "retry"


# PS3.7 Annex C (general N-service codes) and PS3.4 H.4 (print). Seeds 001, 002 and 004
# continue on every warning and stop on every failure; the failures that the standard
# calls temporary (0213: "can temporarily not be provided", PS3.4 H.4.1.2.1.2; a full
# print queue; printer memory) are RETRY here, since the same job may well print later.
# Seed 004 marks C602/C605 failed at once; our retries make that the final result.
SCU_STATUS: Mapping[int, tuple[Outcome, str]] = MappingProxyType(
    {
        0x0000: (Outcome.CONTINUE, "success"),
        # Warnings
        0x0001: (Outcome.WARN, "requested optional attributes are not supported"),
        0x0107: (Outcome.WARN, "attribute list error: the printer ignored some attributes"),
        0x0116: (Outcome.WARN, "attribute value out of range: the printer used its default"),
        0xB600: (Outcome.WARN, "memory allocation not supported (film session created)"),
        0xB601: (Outcome.WARN, "film session printing (collation) is not supported"),
        0xB602: (Outcome.WARN, "film session contains no image box (empty page)"),
        0xB603: (Outcome.WARN, "film box contains no image box (empty page)"),
        0xB604: (Outcome.WARN, "image larger than its image box: demagnified"),
        0xB605: (Outcome.WARN, "min/max density outside the printer's range: its own used"),
        0xB609: (Outcome.WARN, "image larger than its image box: cropped"),
        0xB60A: (Outcome.WARN, "image or combined print image larger than its box: decimated"),
        # General failures (PS3.7 C)
        0x0105: (Outcome.FAIL, "no such attribute"),
        0x0106: (Outcome.FAIL, "invalid attribute value"),
        0x0110: (Outcome.FAIL, "processing failure"),
        0x0111: (Outcome.FAIL, "duplicate SOP instance"),
        0x0112: (Outcome.FAIL, "no such SOP instance"),
        0x0113: (Outcome.FAIL, "no such event type"),
        0x0114: (Outcome.FAIL, "no such argument"),
        0x0115: (Outcome.FAIL, "invalid argument value"),
        0x0117: (Outcome.FAIL, "invalid object instance"),
        0x0118: (Outcome.FAIL, "no such SOP class"),
        0x0119: (Outcome.FAIL, "class-instance conflict"),
        0x0120: (Outcome.FAIL, "missing attribute"),
        0x0121: (Outcome.FAIL, "missing attribute value"),
        0x0122: (Outcome.FAIL, "SOP class not supported"),
        0x0123: (Outcome.FAIL, "no such action"),
        0x0124: (Outcome.FAIL, "not authorised"),
        0x0210: (Outcome.FAIL, "duplicate invocation"),
        0x0211: (Outcome.FAIL, "unrecognised operation"),
        0x0212: (Outcome.FAIL, "mistyped argument"),
        0x0213: (Outcome.RETRY, "resource limitation: the printer cannot do it now"),
        0xA700: (Outcome.RETRY, "out of resources"),
        # Print failures (PS3.4 H.4)
        0xC600: (Outcome.FAIL, "film session contains no film box"),
        0xC601: (Outcome.RETRY, "cannot create the print job: print queue full (film session)"),
        0xC602: (Outcome.RETRY, "cannot create the print job: print queue full (film box)"),
        0xC603: (Outcome.FAIL, "image larger than its image box"),
        0xC604: (Outcome.FAIL, "image position collision (retired code)"),
        0xC605: (Outcome.RETRY, "insufficient memory in the printer to store the image"),
        0xC606: (Outcome.FAIL, "more than one VOI LUT box (retired code)"),
        0xC613: (Outcome.FAIL, "combined print image larger than its image box"),
        0xC616: (
            Outcome.FAIL,
            "an unprinted film box exists and the printer cannot print a whole session",
        ),
    }
)


def outcome(status: int) -> tuple[Outcome, str]:
    """What to do with a DIMSE ``status`` from a print SCP, and what it means.

    Codes not in SCU_STATUS go by their range (PS3.7 C): 0001 and Bxxx are warnings,
    A7xx out of resources (retry), everything else a failure."""
    if status in SCU_STATUS:
        return SCU_STATUS[status]
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF:
        return Outcome.WARN, f"warning 0x{status:04X}"
    if 0xA700 <= status <= 0xA7FF:
        return Outcome.RETRY, f"out of resources (0x{status:04X})"
    return Outcome.FAIL, f"failure 0x{status:04X}"


# ======================================================================================
# Printer Status and Printer Status Info
# ======================================================================================


class Symbol(enum.Enum):
    """Seed 004's camera symbol (§9.7): idle, the operator should act soon, or the
    operator must act now and the printer's queue is stopped."""

    IDLE = "idle"
    INTERACT = "interact"
    STOPPED = "queue stopped"


@dataclass(frozen=True)
class StatusInfo:
    """One Printer Status Info / Execution Status Info defined term.

    ``lcd`` fits a 20-character front-panel line; ``text`` is seed 004's status-bar
    string; ``symbol`` its camera symbol; ``stops_queue`` whether jobs to the printer
    wait for the operator; ``film_size`` the Film Size ID a magazine term is about."""

    lcd: str
    text: str
    symbol: Symbol
    stops_queue: bool
    film_size: str = ""


def _info(lcd: str, text: str, symbol: Symbol, stops: bool | None = None) -> StatusInfo:
    return StatusInfo(lcd, text, symbol, symbol is Symbol.STOPPED if stops is None else stops)


_I, _A, _S = Symbol.IDLE, Symbol.INTERACT, Symbol.STOPPED

# Seed 004 Table 142, with PS3.3 C.13.9.1 terms it lacks (PRINTER BUSY, PRINT BUFF FULL;
# INVALID PAGE DES and INSUFFIC MEMORY of Execution Status Info, C.13.8). Texts are
# seed 004's ("camera" = film printer), symbols too.
#
# stops_queue: seed 004 stops its queue only for ELEC CONFIG ERR, ELEC SW ERROR and
# REQ MED NOT AVAI, and shows "interact" for the rest while it keeps sending. Its own
# definition of "Queue Stopped" names "out of 8x10 clear sheets" and "camera is down" as
# examples, though. We also stop the queue for every condition in which the printer
# cannot make a film until someone acts (empty supply, jam, down, off line, cover open):
# sending into it would only burn the job's retries. Conditions that lower quality
# or warn of what is coming (LOW ..., CHEMICALS LOW, CALIBRATION ERR) do not stop it.
_FIXED: dict[str, StatusInfo] = {
    "NORMAL": _info("Printer ready", "Camera is ready", _I),
    "BAD RECEIVE MGZ": _info("Receive magazine err", "Problem with receive magazine.", _A, True),
    "BAD SUPPLY MGZ": _info("Supply magazine err", "Problem with supply magazine.", _A, True),
    "CALIBRATING": _info("Calibrating", "Self-calibration. Please wait.", _I),
    "CALIBRATION ERR": _info(
        "Calibration error", "Problem in calibration. Film quality may not be optimal.", _A
    ),
    "CHECK CHEMISTRY": _info(
        "Check chemistry", "Problem with chemistry. Film quality may not be optimal.", _A
    ),
    "CHECK SORTER": _info("Sorter error", "Error in film sorter.", _A),
    "CHEMICALS EMPTY": _info("Chemicals empty", "Camera chemistry empty. Please check.", _A, True),
    "CHEMICALS LOW": _info("Chemicals low", "Camera chemistry low. Please check.", _A),
    "COVER OPEN": _info("Cover open", "Camera cover, drawer or door open.", _A, True),
    "ELEC CONFIG ERR": _info(
        "Printer config error", "Camera configured improperly for this job. Queue stopped.", _S
    ),
    "ELEC DOWN": _info("Electrical fault", "Camera electrical hardware problem.", _A, True),
    "ELEC SW ERROR": _info("Printer software err", "Camera software problem. Queue stopped.", _S),
    "EXPOSURE FAILURE": _info("Exposure failure", "Exposure device has failed.", _A, True),
    "FILM JAM": _info("Film jam", "Film jam.", _A, True),
    "FILM TRANSP ERR": _info("Film transport error", "Film transport problem.", _A, True),
    "FINISHER EMPTY": _info("Finisher empty", "Finisher is empty.", _A),
    "FINISHER ERROR": _info("Finisher error", "Finisher problem.", _A),
    "FINISHER LOW": _info("Finisher low", "Finisher low.", _A),
    "NO RECEIVE MGZ": _info("No receive magazine", "Film receiver not available.", _A, True),
    "NO RIBBON": _info("Replace ribbon", "Replace ribbon cartridge.", _A, True),
    "NO SUPPLY MGZ": _info("No supply magazine", "Film supply not available.", _A, True),
    "CHECK PRINTER": _info("Check printer", "Check camera.", _A, True),
    "CHECK PROC": _info("Check processor", "Check processor.", _A, True),
    "PRINTER DOWN": _info("Printer down", "Camera down.", _A, True),
    "PRINTER BUSY": _info("Printer busy", "Camera busy. It will be ready without help.", _I),
    "PRINT BUFF FULL": _info(
        "Printer buffer full", "Camera buffer full. It will take images again by itself.", _I
    ),
    "PRINTER INIT": _info("Printer warming up", "Camera initializing.", _I),
    "PRINTER OFFLINE": _info("Printer offline", "Camera off-line.", _A, True),
    "PROC DOWN": _info("Processor down", "Processor down.", _A, True),
    "PROC INIT": _info("Processor warming up", "Processor initializing.", _I),
    "PROC OVERFLOW FL": _info("Chemicals near full", "Processor chemicals near overflow.", _A),
    # Seed 002's digest prints no message for PROC OVERFLOW HI; seed 004 has this one.
    "PROC OVERFLOW HI": _info("Chemical overflow", "Processor chemicals overflow.", _A, True),
    "QUEUED": _info("Job queued", "Print job in queue.", _I),  # seed 004 shows no message
    "RECEIVER FULL": _info("Receiver full", "Receiver full.", _A, True),
    "REQ MED NOT INST": _info("Install media", "Install media supply.", _A, True),
    "REQ MED NOT AVAI": _info(
        "Media not available",
        "Media supply not available on this camera. Queue stopped. Change camera.",
        _S,
    ),
    "RIBBON ERROR": _info("Ribbon error", "Error with print ribbon.", _A, True),
    "SUPPLY EMPTY": _info("Out of film", "Camera out of film.", _A, True),
    "SUPPLY LOW": _info("Film supply low", "Film supply low.", _A),
    "UNKNOWN": _info("Printer problem", "Unspecified problem with camera.", _A),
    # Execution Status Info of a print job that failed (PS3.3 C.13.8): the job, not
    # the printer, is at fault, so the queue goes on.
    "INVALID PAGE DES": _info("Bad page layout", "Camera cannot print this page layout.", _A),
    "INSUFFIC MEMORY": _info("Printer memory full", "Camera memory too small for this job.", _A),
}

# The magazine terms: EMPTY/LOW <size>[ BLUE| CLR| PAPR], plus A4 paper and transparency.
# Seed 004's descriptions call 24X24 and 24X30 inch sizes; PS3.3 says cm (24CMX24CM).
_MAGAZINE_SIZES = {
    "8X10": ("8x10", "8INX10IN"),
    "10X12": ("10x12", "10INX12IN"),
    "10X14": ("10x14", "10INX14IN"),
    "11X14": ("11x14", "11INX14IN"),
    "14X14": ("14x14", "14INX14IN"),
    "14X17": ("14x17", "14INX17IN"),
    "24X24": ("24x24", "24CMX24CM"),
    "24X30": ("24x30", "24CMX30CM"),
}
_MAGAZINE_MEDIA = {"": "film", " BLUE": "blue film", " CLR": "clear film", " PAPR": "paper"}


def _magazine_terms() -> dict[str, StatusInfo]:
    terms: dict[str, StatusInfo] = {}
    supplies = [
        (code + suffix, shown, medium, size)
        for code, (shown, size) in _MAGAZINE_SIZES.items()
        for suffix, medium in _MAGAZINE_MEDIA.items()
    ]
    supplies += [("A4 PAPR", "A4", "paper", "A4"), ("A4 TRANS", "A4", "transparency", "A4")]
    for code, shown, medium, size in supplies:
        supply = "film supply" if medium == "film" else f"{medium} supply"
        # An empty magazine stops the queue (seed 004's "out of 8x10 clear sheets"
        # example); a queue runner may hold only the jobs that need ``film_size``.
        terms[f"EMPTY {code}"] = StatusInfo(
            f"No {shown} {medium}", f"{shown} {supply} empty.", _A, True, size
        )
        terms[f"LOW {code}"] = StatusInfo(
            f"Low {shown} {medium}", f"{shown} {supply} low.", _A, False, size
        )
    return terms


PRINTER_STATUS_INFO: Mapping[str, StatusInfo] = MappingProxyType({**_FIXED, **_magazine_terms()})


@dataclass(frozen=True)
class PrinterCondition:
    """A printer's state as the operator and the job queue see it."""

    status: str  # Printer Status (2110,0010): NORMAL | WARNING | FAILURE
    info: str  # Printer Status Info (2110,0020), "" if none
    lcd: str  # at most 20 characters, for the front panel
    text: str  # the longer message, for logs, the web page and job reports
    stops_queue: bool  # jobs to this printer wait until the operator has acted
    symbol: Symbol = Symbol.IDLE
    film_size: str = ""  # for magazine conditions: the Film Size ID concerned
    known: bool = True  # False when ``info`` is not a term of PRINTER_STATUS_INFO


def describe_printer(status: str, info: str = "") -> PrinterCondition:
    """What a Printer Status and Printer Status Info mean, after seed 004 Tables 142/143.

    A known info term gives its message and symbol. An unknown one gives "Camera info:
    <info>": with WARNING to act on soon, with FAILURE a stopped queue (Table 143).
    FAILURE always stops the queue: no seed prints on it (seed 000 and 001 fail or
    suspend the job, seeds 002/004 abort it). An unrecognised Printer Status is taken
    as WARNING."""
    status = (status or "").strip().upper() or "NORMAL"
    info = (info or "").strip().upper()
    failure = status == "FAILURE"
    if status not in PRINTER_STATUSES:
        status = "WARNING"
    entry = PRINTER_STATUS_INFO.get(info or "NORMAL")
    if entry is not None and not (info in ("", "NORMAL") and status != "NORMAL"):
        stops = entry.stops_queue or failure
        symbol = Symbol.STOPPED if failure else entry.symbol
        return PrinterCondition(status, info, entry.lcd, entry.text, stops, symbol, entry.film_size)
    if not info or info == "NORMAL":  # WARNING/FAILURE without saying why
        lcd = "Printer failure" if failure else "Printer warning"
        text = f"Camera reports {status} without details."
        known = True
    else:
        lcd = info[:20]
        text = f"Camera info: {info}"
        known = False
    if failure:
        text += " Queue stopped."
    symbol = Symbol.STOPPED if failure else Symbol.INTERACT
    return PrinterCondition(status, info, lcd, text, failure, symbol, known=known)


def printer_may_print(status: str, policy: str = DEFAULT_WARNING_POLICY) -> bool:
    """Whether a job may go on after the Printer N-GET (seed 000 §5.1 step 3): NORMAL
    yes, FAILURE no, WARNING as ``policy`` says (WARNING_POLICY)."""
    if policy not in WARNING_POLICY:
        raise ValueError(f"warning policy {policy!r}: one of {', '.join(WARNING_POLICY)}")
    condition = describe_printer(status)
    if condition.status == "NORMAL":
        return True
    if condition.status == "FAILURE":
        return False
    return policy == "continue"
