"""Mutations for fuzzing: what a broken or hostile peer does to a real object.

Three kinds, mixed per example:

* edits change the object's content and re-encode it with true lengths (an item
  duplicated, a UID replaced by junk, a VR changed with its header re-written, an
  element moved to the tag of an indexed attribute, PDVs split or reordered), so the
  mutation gets past the framing to the code behind it;
* lies change a length or a VR in place and leave the rest as it was;
* blind changes flip, insert, delete or cut bytes anywhere.

Every mutator takes a ``random.Random``: hypothesis drives them through ``st.randoms``
(reproducible, and it keeps the choices of a failing example), the live fuzz loop
through a seeded generator.
"""

from __future__ import annotations

import copy
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from dicombox.core.net import pdu
from tests.support.fuzz_seeds import (
    LONG_VRS,
    UNDEFINED,
    DatasetMapper,
    Field,
    Seed,
    deflate,
)

SHORT_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO"]
SHORT_VRS += [b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"]
VR_CODES = [*SHORT_VRS, *sorted(LONG_VRS), b"\x00\x00", b"  ", b"ZZ"]
# Texts a peer may put where a UID, an AE title or a code string belongs.
ODD_TEXTS = [
    b"",
    b" ",
    b"\x00",
    b"1.2.3",
    b"1.2.840.10008.5.1.4.1.1.2\x00",
    b"1.2\\3.4",
    b"\\",
    b"\xff\xfe\xfd",
    b"\xe9t\xe9",
    b"\x1b$B\x1b(B",
    b"1." + b"9" * 70,
    b"%s%n%x",
    b"..",
    b"-1",
    b"ISO_IR 192",
    b"ISO 2022 IR 87\\ISO 2022 IR 159",
    b"\x01\x02\x03\x04",
]
# Tags a moved element may land on: what the header walk keeps and the index reads.
INDEXED = [
    0x00080005,  # Specific Character Set
    0x00080016,
    0x00080018,
    0x0020000D,
    0x0020000E,
    0x00100010,
    0x00100020,
    0x00080020,
    0x00080050,
    0x00080060,
    0x00200011,
    0x00280008,
    0x00280010,
    0x00280011,
    0x00185100,
    0x00400275,  # Request Attributes Sequence
    0x0040A043,  # Concept Name Code Sequence
    0x00181010,
    0x7FE00010,
]
COMMAND_TAGS = [0x0000, 0x0002, 0x0003, 0x0100, 0x0110, 0x0120, 0x0600, 0x0700, 0x0800]
COMMAND_TAGS += [0x0900, 0x0901, 0x0902, 0x1000, 0x1001, 0x1005, 0x1008, 0x1030, 0x1031]


def mutate(seed: Seed, rng: random.Random) -> bytes:
    """``seed`` as a broken or hostile peer sends it."""
    mode = rng.choice(["edit", "edit", "edit", "lie", "blind", "mixed"])
    data = seed.data
    editor = EDITORS.get(seed.kind)
    if editor is not None and mode in ("edit", "mixed"):
        for _ in range(rng.randint(1, 3)):
            data = editor(data, seed, rng)
    if mode in ("lie", "mixed") and (seed.lengths or seed.vrs):
        data = _lie(data, seed, rng)
    if mode == "blind" or (mode == "mixed" and rng.random() < 0.5) or data == seed.data:
        data = _blind(data, rng)
    if not seed.deflated:
        return data
    # A deflated data set: corrupted before deflating (to reach the parser behind the
    # inflater) or, sometimes, after (the inflater itself).
    return deflate(data) if rng.random() < 0.8 else _blind(deflate(seed.data), rng)


# --------------------------------------------------------------------------- lies
def _lie(data: bytes, seed: Seed, rng: random.Random) -> bytes:
    """One to three lengths or VRs changed in place, at the seed's offsets (after an
    edit these may point elsewhere: a lie all the same)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if seed.vrs and (not seed.lengths or rng.random() < 0.25):
            at = rng.choice(seed.vrs)
            out[at : at + 2] = rng.choice(VR_CODES) if rng.random() < 0.8 else rng.randbytes(2)
        elif seed.lengths:
            field = rng.choice(seed.lengths)
            if field.offset + field.size <= len(out):
                value = _lying_length(field, field.read(out), rng)
                out[field.offset : field.offset + field.size] = value.to_bytes(
                    field.size, field.byteorder
                )
    return bytes(out)


def _lying_length(field: Field, original: int, rng: random.Random) -> int:
    top = (1 << (8 * field.size)) - 1
    candidates = [0, 1, 2, 3, original - 1, original + 1, original * 2, original + 8, top]
    candidates += [top - 1, rng.randrange(top + 1)]
    if field.size == 4:
        candidates += [0x7FFFFFFF, UNDEFINED, 1 << 20, (1 << 20) + 1]
    return rng.choice(candidates) & top


# -------------------------------------------------------------------------- blind
def _blind(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        rng.choice(_BLIND)(out, rng)
    return bytes(out)


def _flip(out: bytearray, rng: random.Random) -> None:
    if out:
        out[rng.randrange(len(out))] ^= rng.choice([0x01, 0x80, 0xFF, rng.randrange(1, 256)])


def _set_byte(out: bytearray, rng: random.Random) -> None:
    if out:
        out[rng.randrange(len(out))] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])


def _insert(out: bytearray, rng: random.Random) -> None:
    at = rng.randrange(len(out) + 1)
    out[at:at] = rng.randbytes(rng.choice([1, 2, 4, 8, rng.randint(1, 64)]))


def _delete(out: bytearray, rng: random.Random) -> None:
    if out:
        start = rng.randrange(len(out))
        del out[start : start + rng.choice([1, 2, 4, 8, rng.randint(1, 256)])]


def _truncate(out: bytearray, rng: random.Random) -> None:
    del out[rng.randrange(len(out) + 1) :]


_BLIND = (_flip, _set_byte, _insert, _delete, _truncate)


def _odd_value(value: bytes, rng: random.Random) -> bytes:
    """What a peer may send instead of ``value``."""
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(ODD_TEXTS)
    if choice < 0.6:
        return rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, 8, rng.randint(0, 80)]))
    return _blind(value, rng) if value else rng.randbytes(rng.randint(1, 8))


def _shuffle_list(entries: list, rng: random.Random, make_odd: Callable[[], object]) -> None:
    """Duplicate, drop, swap or add one entry of ``entries``."""
    action = rng.choice(["duplicate", "drop", "swap", "add"])
    if action == "add" or not entries:
        entries.insert(rng.randint(0, len(entries)), make_odd())
    elif action == "duplicate":
        at = rng.randrange(len(entries))
        entries[at:at] = [copy.deepcopy(entries[at]) for _ in range(rng.randint(1, 3))]
    elif action == "drop":
        del entries[rng.randrange(len(entries))]
    else:
        i, j = rng.randrange(len(entries)), rng.randrange(len(entries))
        entries[i], entries[j] = entries[j], entries[i]


# ----------------------------------------------------------- A-ASSOCIATE-RQ edits
@dataclass
class _Item:
    """A variable item or sub-item (PS3.8 §9.3.2): type, fixed prefix, then either
    sub-items or a value."""

    kind: int
    prefix: bytes = b""
    children: list[_Item] | None = None
    value: bytes = b""

    def encode(self) -> bytes:
        body = self.prefix + (
            b"".join(c.encode() for c in self.children) if self.children is not None else self.value
        )
        body = body[:0xFFFF]
        return struct.pack(">BBH", self.kind, 0, len(body)) + body


def _parse_items(data: bytes, nested: bool) -> list[_Item]:
    items, pos = [], 0
    while pos + 4 <= len(data):
        kind = data[pos]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if nested and kind in (0x20, 0x21):
            items.append(_Item(kind, body[:4], _parse_items(body[4:], nested=False)))
        elif nested and kind == 0x50:
            items.append(_Item(kind, b"", _parse_items(body, nested=False)))
        else:
            items.append(_Item(kind, value=body))
    return items


_ITEM_TYPES = [0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58]


def _edit_association(data: bytes, seed: Seed, rng: random.Random) -> bytes:
    """One change to an A-ASSOCIATE-RQ's fields, items or sub-items; true lengths."""
    if len(data) < 74:
        return data
    fixed = bytearray(data[6:74])  # version, reserved, called AE, calling AE, reserved
    items = _parse_items(data[74:], nested=True)
    target = rng.random()
    if target < 0.15:
        at = rng.choice([4, 20])  # called or calling AE title
        fixed[at : at + 16] = (_odd_value(bytes(fixed[at : at + 16]), rng) + b" " * 16)[:16]
    elif target < 0.2:
        fixed[0:2] = rng.randbytes(2)  # protocol version
    else:
        containers = [items] + [i.children for i in items if i.children is not None]
        entries = rng.choice(containers)
        if rng.random() < 0.4 or not entries:
            _shuffle_list(
                entries, rng, lambda: _Item(rng.choice(_ITEM_TYPES), value=_odd_value(b"", rng))
            )
        else:
            entry = rng.choice(entries)
            change = rng.random()
            if change < 0.15:
                entry.kind = rng.choice(_ITEM_TYPES + [rng.randrange(256)])
            elif entry.children is not None and change < 0.35:
                entry.prefix = (
                    bytes([rng.choice([0, 1, 2, 255, rng.randrange(256)])]) + entry.prefix[1:]
                )
            elif entry.children is None:
                entry.value = _odd_value(entry.value, rng)
    body = bytes(fixed) + b"".join(i.encode() for i in items)
    return struct.pack(">BBI", pdu.A_ASSOCIATE_RQ, 0, len(body)) + body


# ------------------------------------------------------------------ data set edits
@dataclass
class _Element:
    tag: int
    vr: bytes  # b"" when implicit
    value: bytes
    undefined: bool = False  # the value holds its items and the sequence delimiter

    def encode(self, explicit: bool, little: bool) -> bytes:
        order = "<" if little else ">"
        length = UNDEFINED if self.undefined else len(self.value)
        head = struct.pack(order + "HH", self.tag >> 16, self.tag & 0xFFFF)
        if explicit and self.tag >> 16 != 0xFFFE:
            if self.vr in LONG_VRS:
                head += self.vr + b"\x00\x00" + struct.pack(order + "I", length)
            else:
                head += self.vr + struct.pack(order + "H", min(length, 0xFFFF))
        else:
            head += struct.pack(order + "I", length)
        return head + self.value


def _top_elements(seed: Seed, data: bytes) -> list[_Element]:
    mapper = DatasetMapper(data, seed.explicit, seed.little)
    mapper.walk(0, len(data), depth=0)
    order = "<" if seed.little else ">"
    elements = []
    for start, header, end in mapper.top:
        group, elem = struct.unpack_from(order + "HH", data, start)
        vr = data[start + 4 : start + 6] if seed.explicit and group != 0xFFFE else b""
        four_byte_length = header == 12 or not vr
        undefined = four_byte_length and data[start + header - 4 : start + header] == b"\xff" * 4
        elements.append(_Element((group << 16) | elem, vr, data[start + header : end], undefined))
    return elements


def _edit_dataset(data: bytes, seed: Seed, rng: random.Random) -> bytes:
    """One change to a data set's top-level elements, re-encoded with true lengths."""
    elements = _top_elements(seed, data)
    if not elements:
        return data
    change = rng.random()
    element = rng.choice(elements)
    if change < 0.3:
        element.value, element.undefined = _odd_value(element.value, rng), False
    elif change < 0.5 and seed.explicit:
        element.vr = rng.choice(VR_CODES)
        if element.vr not in LONG_VRS and len(element.value) > 0xFFFF:
            element.vr = b"OB"
        if element.vr not in LONG_VRS:
            element.undefined = False
    elif change < 0.7:
        # The element takes the tag of an attribute the header walk keeps, so the
        # decoding behind the walk (pydicom's, the index's) sees a value it did not expect.
        element.tag = rng.choice(INDEXED)
    else:
        _shuffle_list(
            elements,
            rng,
            lambda: _Element(
                rng.choice(INDEXED),
                rng.choice(VR_CODES) if seed.explicit else b"",
                _odd_value(b"", rng),
            ),
        )
    return b"".join(e.encode(seed.explicit, seed.little) for e in elements)


# ----------------------------------------------------------------- command set edits
def _edit_command(data: bytes, seed: Seed, rng: random.Random) -> bytes:
    """One change to a command set's elements (Implicit VR LE), true lengths."""
    elements, pos = [], 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        elements.append(_Element((group << 16) | elem, b"", data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    change = rng.random()
    if elements and change < 0.45:
        element = rng.choice(elements)
        element.value = rng.choice(
            [
                _odd_value(element.value, rng),
                rng.randbytes(2),
                rng.randbytes(rng.choice([0, 1, 3, 4])),
            ]
        )
    elif elements and change < 0.6:
        rng.choice(elements).tag = rng.choice(
            COMMAND_TAGS + [rng.randrange(1 << 16), rng.randrange(1 << 32)]
        )
    else:
        _shuffle_list(
            elements,
            rng,
            lambda: _Element(rng.choice(COMMAND_TAGS), b"", _odd_value(b"", rng)),
        )
    body = [e for e in elements if e.tag != 0]
    encoded = b"".join(e.encode(False, True) for e in body)
    if rng.random() < 0.7:  # usually a true group length, as a real peer writes
        encoded = _Element(0, b"", struct.pack("<I", len(encoded))).encode(False, True) + encoded
    return encoded


# ------------------------------------------------------------------- P-DATA edits
def _edit_p_data(data: bytes, seed: Seed, rng: random.Random) -> bytes:
    """One change to the PDVs of a message: duplicated, dropped, reordered, split,
    moved to another context or with other control bits; then packed into PDUs
    (one to three PDVs each) with true lengths."""
    pdvs, pos = [], 0
    while pos + 6 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos + 2)
        body, item = data[pos + 6 : pos + 6 + length], 0
        while item + 6 <= len(body):
            item_length, context, control = struct.unpack_from(">IBB", body, item)
            pdvs.append([context, control, body[item + 6 : item + 4 + item_length]])
            item += 4 + item_length
        pos += 6 + length
    change = rng.random()
    if pdvs and change < 0.2:
        rng.choice(pdvs)[0] = rng.choice([0, 1, 2, 3, 5, 255, rng.randrange(256)])
    elif pdvs and change < 0.4:
        rng.choice(pdvs)[1] = rng.choice([0, 1, 2, 3, rng.randrange(256)])
    elif pdvs and change < 0.6:
        at = rng.randrange(len(pdvs))
        context, control, value = pdvs[at]
        cut = rng.randint(0, len(value))
        pdvs[at : at + 1] = [[context, control & ~2, value[:cut]], [context, control, value[cut:]]]
    else:
        _shuffle_list(pdvs, rng, lambda: [rng.choice([1, 3]), rng.randrange(4), rng.randbytes(8)])
    out, at = b"", 0
    while at < len(pdvs):
        group = pdvs[at : at + rng.randint(1, 3)]
        at += len(group)
        items = b"".join(struct.pack(">IBB", len(v) + 2, c, m & 0xFF) + v for c, m, v in group)
        out += struct.pack(">BBI", pdu.P_DATA_TF, 0, len(items)) + items
    return out


EDITORS: dict[str, Callable[[bytes, Seed, random.Random], bytes]] = {
    "association": _edit_association,
    "dataset": _edit_dataset,
    "command": _edit_command,
    "p-data": _edit_p_data,
}
