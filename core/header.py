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
    """Walks element headers over ``head`` (the file's first bytes, all of them when it
    is small) and goes to the file ``rest`` only for headers that lie past it: a
    received header usually fits in the first few kB, so the walk seldom touches the
    disk."""

    def __init__(
        self,
        head: bytes,
        rest: BinaryIO | _LazyFile | None,
        end: int,
        explicit: bool,
        little: bool,
        wanted: frozenset[int],
    ) -> None:
        self.head = head[:end]
        self.rest = rest
        self.end = end
        self.explicit = explicit
        self.little = little
        order = "<" if little else ">"
        self._tag_struct = struct.Struct(order + "HH")
        self._u16 = struct.Struct(order + "H")
        self._u32 = struct.Struct(order + "I")
        self.wanted = wanted
        self.found: dict[int, RawDataElement] = {}

    def _read(self, pos: int, n: int) -> bytes:
        if pos + n > self.end:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
        if pos + n <= len(self.head):
            return self.head[pos : pos + n]
        if self.rest is None:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
        self.rest.seek(pos)
        return self.rest.read(n)

    def _at(self, pos: int, n: int) -> tuple[bytes, int, int]:
        """Up to ``n`` bytes from ``pos`` as (buffer, offset, how many there are), without
        a copy when they lie in the head."""
        if pos + n <= len(self.head):
            return self.head, pos, n
        piece = self._read(pos, min(n, self.end - pos))
        return piece, 0, len(piece)

    def _element_header(self, pos: int) -> tuple[int, bytes, int, int]:
        """(tag, VR or b"", value length, header size) of the element at ``pos``."""
        buf, at, have = self._at(pos, 12)
        if have < 4:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
        group, elem = self._tag_struct.unpack_from(buf, at)
        vr = b""
        if self.explicit and group != 0xFFFE:
            if have < 6:
                raise Truncated(f"data set ends inside an element header at byte {pos}")
            vr = buf[at + 4 : at + 6]
            if not (vr.isalpha() and vr.isupper()):  # two ASCII capitals
                # No VR at all: read the element as implicit VR, as pydicom does (for
                # writers that switch to implicit VR inside a sequence), so that what is
                # whole here is whole for pydicom too.
                vr = b""
        if vr in _LONG_VRS:
            need, length_struct, length_at = 12, self._u32, 8
        elif vr:
            need, length_struct, length_at = 8, self._u16, 6
        else:
            need, length_struct, length_at = 8, self._u32, 4
        if have < need:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
        (length,) = length_struct.unpack_from(buf, at + length_at)
        return (group << 16) | elem, vr, length, need

    def dataset(self, pos: int, end: int, in_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or, inside an item of undefined
        length, after its delimiter. Returns the position after the walk."""
        while pos < end:
            tag, vr, length, header = self._element_header(pos)
            if tag == _ITEM_END:
                if not in_item:
                    raise Truncated(f"stray item delimiter at byte {pos}")
                return pos + 8
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
            buf, at, have = self._at(pos, 8)
            if have < 8:
                raise Truncated(f"data set ends inside an item header at byte {pos}")
            group, elem = self._tag_struct.unpack_from(buf, at)
            (length,) = self._u32.unpack_from(buf, at + 4)
            tag = (group << 16) | elem
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


class _LazyFile:
    """A file opened on its first read: with the head in memory most walks need none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO | None = None

    def _file(self) -> BinaryIO:
        if self._f is None:
            self._f = open(self.path, "rb", buffering=16384)  # noqa: SIM115 (closed on exit)
        return self._f

    def seek(self, pos: int) -> None:
        self._file().seek(pos)

    def read(self, n: int) -> bytes:
        return self._file().read(n)

    def __enter__(self) -> _LazyFile:
        return self

    def __exit__(self, *_: object) -> None:
        if self._f is not None:
            self._f.close()


def check_complete(f: BinaryIO, start: int, end: int, explicit: bool, little: bool) -> None:
    """Raise ``Truncated`` unless the data set in ``f[start:end]`` is whole."""
    f.seek(0)
    head = f.read(min(end, HEAD_BYTES))
    _Walker(head, f, end, explicit, little, frozenset()).dataset(start, end, in_item=False)


def scan_header(
    path: Path,
    dataset_offset: int,
    dataset_end: int,
    transfer_syntax: str,
    wanted: frozenset[int],
    head: bytes = b"",
) -> Dataset:
    """Check that the data set is whole and return its ``wanted`` top-level elements as a
    Dataset (converted lazily by pydicom). Raises ``Truncated`` or ``Unreadable``.

    ``head``, when given, is the file's first bytes as they were written (see
    ``IncomingFile.head``): the walk reads the file only for what lies past them."""
    ts = UID(transfer_syntax)
    explicit, little = ts.is_implicit_VR is False, ts.is_little_endian is not False
    if ts.is_deflated:  # a deflated stream can only be walked once inflated
        with open(path, "rb") as f:
            f.seek(dataset_offset)
            inflated = _inflate(f.read(dataset_end - dataset_offset))
        walker = _Walker(inflated, None, len(inflated), explicit, little, wanted)
        walker.dataset(0, len(inflated), in_item=False)
    else:  # the file is opened only if the walk goes past the head
        with _LazyFile(path) as rest:
            if not head:
                rest.seek(0)
                head = rest.read(min(dataset_end, HEAD_BYTES))
            walker = _Walker(head, rest, dataset_end, explicit, little, wanted)
            walker.dataset(dataset_offset, dataset_end, in_item=False)
    ds = Dataset(walker.found)
    try:
        charset = ds.get("SpecificCharacterSet") if 0x00080005 in walker.found else None
        if charset is not None and not isinstance(charset, str | MultiValue):
            # A sequence, say: pydicom cannot even read such a file back.
            raise Unreadable("Specific Character Set is not text")
        encodings = convert_encodings(charset)
        ds.set_original_encoding(not explicit, little, encodings)
        _decode_kept(ds, single_byte=set(encodings) <= _EVERY_BYTE_DECODES)
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


def _decode_kept(ds: Dataset, single_byte: bool) -> None:
    """Decode now every kept element whose decoding could fail, so that a corrupt value
    or VR is refused here, as data (C000), and not raised where the index reads it.
    pydicom keeps what it decoded: no work twice.

    Skipped, because nothing in them can fail: ASCII values (``value_of`` reads them
    raw), text in a character set where every byte is a character, and binary numbers
    whose length is a whole number of values (``value_of`` reads US raw too)."""
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        vr = (element.VR if isinstance(element, RawDataElement) else None) or dictionary_VR(tag)
        if vr in _ASCII_VRS or (single_byte and vr in _TEXT_VRS):
            continue
        size = _BINARY_SIZES.get(vr)
        if size and isinstance(element, RawDataElement):
            if len(element.value or b"") % size:
                raise Unreadable(f"{vr} value of {len(element.value)} bytes")
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
# Text VRs, which pydicom decodes by the character set; with these Python codecs every
# byte string decodes (the default repertoire is read as ISO 8859-1, as pydicom does).
_TEXT_VRS = {"LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_EVERY_BYTE_DECODES = {"iso8859", "latin_1"}
_BINARY_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8}


@cache
def _tag_and_vr(keyword: str) -> tuple[BaseTag, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    # A BaseTag, not a plain int: pydicom's lookups take it as it is, without a
    # conversion each time (this runs several times per received instance).
    return BaseTag(tag), dictionary_VR(tag)


def tag_of(keyword: str) -> BaseTag:
    """The tag of a DICOM keyword, looked up once."""
    return _tag_and_vr(keyword)[0]


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
