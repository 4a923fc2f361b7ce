"""A received data set's header, read in one pass: is it whole, and what does it say?

pydicom reads a data set cut short in its pixel data without complaint, so before the
box answers success it walks every element header (into sequences and encapsulated
pixel data) and checks that each value fits inside the file. On the way it keeps the raw
value of the few top-level elements the box needs (UIDs, the index's keys) and skips
every other value. Those become a pydicom Dataset that converts them only when asked,
so the hot path never runs a full parse.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_UNDEFINED = 0xFFFFFFFF
HEAD_BYTES = 1 << 16
# A deflated data set is inflated in memory to be walked: a few kB of deflate stream can
# claim gigabytes, so the inflated size is bounded (real deflated objects are far smaller).
MAX_INFLATED = 256 << 20
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class Truncated(ValueError):
    """The data set ends before one of its elements does."""


class Unreadable(ValueError):
    """The data set cannot be decoded: a corrupt deflate stream, or an element the box
    reads whose value does not fit its VR. Like ``Truncated``, answered with C000."""


class _Walker:
    def __init__(
        self, f: BinaryIO, end: int, explicit: bool, little: bool, wanted: frozenset[int]
    ) -> None:
        self.f = f
        self.end = end
        self.explicit = explicit
        self.little = little
        self.order = "<" if little else ">"
        self.wanted = wanted
        self.found: dict[int, RawDataElement] = {}
        # The header usually sits in the first few kB: read it once and slice, and go to
        # the file only for what lies past it (the pixel data's own header, say).
        f.seek(0)
        self.head = f.read(min(end, HEAD_BYTES))

    def _read(self, pos: int, n: int) -> bytes:
        if pos + n > self.end:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
        if pos + n <= len(self.head):
            return self.head[pos : pos + n]
        self.f.seek(pos)
        return self.f.read(n)

    def _tag(self, pos: int) -> int:
        group, elem = struct.unpack(self.order + "HH", self._read(pos, 4))
        return (group << 16) | elem

    def dataset(self, pos: int, end: int, in_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or, inside an item of undefined
        length, after its delimiter. Returns the position after the walk."""
        while pos < end:
            tag = self._tag(pos)
            if tag == _ITEM_END:
                if not in_item:
                    raise Truncated(f"stray item delimiter at byte {pos}")
                return pos + 8
            vr = self._read(pos + 4, 2) if self.explicit and tag >> 16 != 0xFFFE else b""
            if vr and not (vr.isalpha() and vr.isupper()):  # two ASCII capitals
                # No VR at all: read the element as implicit VR, as pydicom does (for
                # writers that switch to implicit VR inside a sequence), so that what is
                # whole here is whole for pydicom too.
                vr = b""
            if vr in _LONG_VRS:
                (length,) = struct.unpack(self.order + "I", self._read(pos + 8, 4))
                header = 12
            elif vr:
                (length,) = struct.unpack(self.order + "H", self._read(pos + 6, 2))
                header = 8
            else:
                (length,) = struct.unpack(self.order + "I", self._read(pos + 4, 4))
                header = 8
            pos += header
            keep = not in_item and tag in self.wanted
            if length == _UNDEFINED:
                start = pos
                pos = self.sequence(pos, implicit_items=vr == b"UN")
                if keep:  # the items, without the sequence delimiter pydicom does not want
                    self._keep(tag, vr, _UNDEFINED, start, pos - 8 - start, header)
            else:
                if pos + length > end:
                    raise Truncated(
                        f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) of {length} bytes "
                        f"runs past the end of the data set"
                    )
                if keep:
                    self._keep(tag, vr, length, pos, length, header)
                pos += length
        if in_item:
            raise Truncated("item of undefined length has no delimiter")
        return pos

    def _keep(self, tag: int, vr: bytes, length: int, at: int, size: int, header: int) -> None:
        value = self._read(at, size)
        self.found[tag] = RawDataElement(
            BaseTag(tag),
            vr.decode("ascii") if vr else None,
            length,
            value,
            at - header,
            not self.explicit,
            self.little,
        )

    def sequence(self, pos: int, implicit_items: bool) -> int:
        """Walk the items of a sequence (or encapsulated pixel data) of undefined length."""
        while True:
            tag = self._tag(pos)
            (length,) = struct.unpack(self.order + "I", self._read(pos + 4, 4))
            pos += 8
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise Truncated(f"expected an item at byte {pos - 8}")
            if length == _UNDEFINED:
                saved = self.explicit
                self.explicit = self.explicit and not implicit_items
                pos = self.dataset(pos, self.end, in_item=True)
                self.explicit = saved
            else:
                if pos + length > self.end:
                    raise Truncated(f"item of {length} bytes runs past the end of the data set")
                pos += length


def check_complete(f: BinaryIO, start: int, end: int, explicit: bool, little: bool) -> None:
    """Raise ``Truncated`` unless the data set in ``f[start:end]`` is whole."""
    _Walker(f, end, explicit, little, frozenset()).dataset(start, end, in_item=False)


def scan_header(
    path: Path,
    dataset_offset: int,
    dataset_end: int,
    transfer_syntax: str,
    wanted: frozenset[int],
) -> Dataset:
    """Check that the data set is whole and return its ``wanted`` top-level elements as a
    Dataset (converted lazily by pydicom). Raises ``Truncated`` or ``Unreadable``."""
    ts = UID(transfer_syntax)
    explicit, little = ts.is_implicit_VR is False, ts.is_little_endian is not False
    if ts.is_deflated:  # a deflated stream can only be walked once inflated
        with open(path, "rb") as f:
            f.seek(dataset_offset)
            inflated = _inflate(f.read(dataset_end - dataset_offset))
        walker = _Walker(BytesIO(inflated), len(inflated), explicit, little, wanted)
        walker.dataset(0, len(inflated), in_item=False)
    else:
        with open(path, "rb", buffering=16384) as f:
            walker = _Walker(f, dataset_end, explicit, little, wanted)
            walker.dataset(dataset_offset, dataset_end, in_item=False)
    ds = Dataset(walker.found)
    try:
        charset = ds.get("SpecificCharacterSet") if 0x00080005 in walker.found else None
        if charset is not None and not isinstance(charset, str | MultiValue):
            # A sequence, say: pydicom cannot even read such a file back.
            raise Unreadable("Specific Character Set is not text")
        ds.set_original_encoding(not explicit, little, convert_encodings(charset))
        _decode_kept(ds)
    except Exception as exc:  # pydicom raises assorted types on a corrupt value or VR
        raise Unreadable(f"an element cannot be decoded: {exc}") from None
    return ds


def _inflate(data: bytes) -> bytes:
    """A Deflated Explicit VR Little Endian data set, inflated, within MAX_INFLATED."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, MAX_INFLATED)
    except zlib.error as exc:
        raise Unreadable(f"deflated data set cannot be inflated: {exc}") from None
    if inflater.unconsumed_tail:
        raise Unreadable(f"deflated data set inflates past {MAX_INFLATED >> 20} MiB")
    if not inflater.eof:
        raise Truncated("deflated data set ends before its deflate stream does")
    return inflated


def _decode_kept(ds: Dataset) -> None:
    """Decode now every kept element that ``value_of`` does not read raw (and what kept
    sequences hold), so that a corrupt value or VR is refused here, as data (C000), and
    not raised where the index reads it. pydicom keeps what it decoded: no work twice."""
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        vr = element.VR if isinstance(element, RawDataElement) else None
        if (vr or dictionary_VR(tag)) in _ASCII_VRS:
            continue
        decoded = ds[tag]
        if decoded.VR == "SQ":
            for item in decoded.value:
                for _ in item.iterall():
                    pass


def dataset_offset(path: Path) -> int:
    """Where the data set starts in a Part 10 file (after the preamble and the meta,
    whose group length the box always writes)."""
    with open(path, "rb") as f:
        head = f.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        raise Truncated(f"{path.name} is not a DICOM Part 10 file with a meta group length")
    (meta_length,) = struct.unpack("<I", head[140:144])
    return 144 + meta_length


def read_stored_header(path: Path, wanted: frozenset[int]) -> Dataset:
    """``scan_header`` for a file of the store, whose layout is read from its meta."""
    offset = dataset_offset(path)
    meta = read_file_meta_info(path)
    ds = scan_header(path, offset, path.stat().st_size, str(meta.TransferSyntaxUID), wanted)
    ds.file_meta = meta
    return ds


# Value representations whose bytes are plain ASCII whatever the character set: read
# straight from the raw element, without pydicom's conversion (the hot path).
_ASCII_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"}


@cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag, dictionary_VR(tag)


def value_of(ds: Dataset, keyword: str) -> Any:
    """An element's value; ASCII ones straight from their raw bytes."""
    tag, vr = _tag_and_vr(keyword)
    if tag not in ds:
        return None
    element = ds.get_item(tag)
    if isinstance(element, RawDataElement) and (element.VR or vr) in _ASCII_VRS:
        raw = element.value or b""
        return raw.decode("ascii", "replace").strip(" \x00")
    if isinstance(element, RawDataElement) and (element.VR or vr) == "US" and element.value:
        return struct.unpack("<H" if element.is_little_endian else ">H", element.value[:2])[0]
    return ds[tag].value
