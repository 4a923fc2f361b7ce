"""Is a received data set whole? A walk over its element headers, values skipped.

pydicom reads a data set cut short in its pixel data without complaint, so before the
box answers success it walks every element header (into sequences and encapsulated
pixel data) and checks that each value fits inside the file. Values are never read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
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
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class Truncated(ValueError):
    """The data set ends before one of its elements does."""


class _Walker:
    def __init__(self, f: BinaryIO, end: int, explicit: bool, little: bool) -> None:
        self.f = f
        self.end = end
        self.explicit = explicit
        self.order = "<" if little else ">"

    def _read(self, pos: int, n: int) -> bytes:
        if pos + n > self.end:
            raise Truncated(f"data set ends inside an element header at byte {pos}")
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
            if self.explicit and tag >> 16 != 0xFFFE:
                vr = self._read(pos + 4, 2)
                if vr in _LONG_VRS:
                    (length,) = struct.unpack(self.order + "I", self._read(pos + 8, 4))
                    header = 12
                else:
                    (length,) = struct.unpack(self.order + "H", self._read(pos + 6, 2))
                    header = 8
            else:
                vr = b""
                (length,) = struct.unpack(self.order + "I", self._read(pos + 4, 4))
                header = 8
            pos += header
            if length == _UNDEFINED:
                pos = self.sequence(pos, implicit_items=vr == b"UN")
            else:
                if pos + length > end:
                    raise Truncated(
                        f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) of {length} bytes "
                        f"runs past the end of the data set"
                    )
                pos += length
        if in_item:
            raise Truncated("item of undefined length has no delimiter")
        return pos

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
    _Walker(f, end, explicit, little).dataset(start, end, in_item=False)


def read_checked_header(
    path: Path, dataset_offset: int, dataset_end: int, transfer_syntax: str
) -> Dataset:
    """The header of a Part 10 file (up to its pixel data), once the data set is known to
    be whole. Raises ``Truncated`` or pydicom's errors for what cannot be read."""
    ts = UID(transfer_syntax)
    with open(path, "rb") as f:
        if not ts.is_deflated:  # a deflated stream is checked by inflating it in pydicom
            check_complete(
                f,
                dataset_offset,
                dataset_end,
                ts.is_implicit_VR is False,
                ts.is_little_endian is not False,
            )
        f.seek(0)
        return dcmread(f, stop_before_pixels=True, defer_size=4096)


def read_stored_header(path: Path) -> Dataset:
    """``read_checked_header`` for a file of the store, whose layout is read from its meta."""
    with open(path, "rb") as f:
        head = f.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        raise Truncated(f"{path.name} has no DICOM file meta group length")
    (meta_length,) = struct.unpack("<I", head[140:144])
    meta = read_file_meta_info(path)
    return read_checked_header(
        path, 144 + meta_length, path.stat().st_size, str(meta.TransferSyntaxUID)
    )
