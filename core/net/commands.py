"""DIMSE command sets: group 0000, always Implicit VR Little Endian (PS3.7 §6.3, §9.3).

Command sets are a dozen small elements, so they get a small exact codec here rather than
a general data set parser: it runs on every message of the hot path.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Command Field values (PS3.7 §E.1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_GET_RQ, N_GET_RSP = 0x0110, 0x8110
N_SET_RQ, N_SET_RSP = 0x0120, 0x8120
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
N_CREATE_RQ, N_CREATE_RSP = 0x0140, 0x8140
N_DELETE_RQ, N_DELETE_RSP = 0x0150, 0x8150
C_CANCEL_RQ = 0x0FFF

COMMAND_NAMES = {
    C_STORE_RQ: "C-STORE-RQ",
    C_STORE_RSP: "C-STORE-RSP",
    C_GET_RQ: "C-GET-RQ",
    C_GET_RSP: "C-GET-RSP",
    C_FIND_RQ: "C-FIND-RQ",
    C_FIND_RSP: "C-FIND-RSP",
    C_MOVE_RQ: "C-MOVE-RQ",
    C_MOVE_RSP: "C-MOVE-RSP",
    C_ECHO_RQ: "C-ECHO-RQ",
    C_ECHO_RSP: "C-ECHO-RSP",
    N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ",
    N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP",
    N_GET_RQ: "N-GET-RQ",
    N_GET_RSP: "N-GET-RSP",
    N_SET_RQ: "N-SET-RQ",
    N_SET_RSP: "N-SET-RSP",
    N_ACTION_RQ: "N-ACTION-RQ",
    N_ACTION_RSP: "N-ACTION-RSP",
    N_CREATE_RQ: "N-CREATE-RQ",
    N_CREATE_RSP: "N-CREATE-RSP",
    N_DELETE_RQ: "N-DELETE-RQ",
    N_DELETE_RSP: "N-DELETE-RSP",
    C_CANCEL_RQ: "C-CANCEL-RQ",
}

NO_DATASET = 0x0101  # Command Data Set Type value meaning "no data set follows"
# Requests that always carry a data set (PS3.7 §9.3, §10.3): no handler can answer one
# without it, so its absence is a protocol error.
DATASET_REQUIRED = frozenset({C_STORE_RQ, C_FIND_RQ, C_GET_RQ, C_MOVE_RQ, N_SET_RQ})

# Tag -> (keyword, value kind). Kinds: "US", "UL", "AT" (list of tags), "UI", "AE", "LO".
COMMAND_ELEMENTS: dict[int, tuple[str, str]] = {
    0x00000000: ("CommandGroupLength", "UL"),
    0x00000002: ("AffectedSOPClassUID", "UI"),
    0x00000003: ("RequestedSOPClassUID", "UI"),
    0x00000100: ("CommandField", "US"),
    0x00000110: ("MessageID", "US"),
    0x00000120: ("MessageIDBeingRespondedTo", "US"),
    0x00000600: ("MoveDestination", "AE"),
    0x00000700: ("Priority", "US"),
    0x00000800: ("CommandDataSetType", "US"),
    0x00000900: ("Status", "US"),
    0x00000901: ("OffendingElement", "AT"),
    0x00000902: ("ErrorComment", "LO"),
    0x00000903: ("ErrorID", "US"),
    0x00001000: ("AffectedSOPInstanceUID", "UI"),
    0x00001001: ("RequestedSOPInstanceUID", "UI"),
    0x00001002: ("EventTypeID", "US"),
    0x00001005: ("AttributeIdentifierList", "AT"),
    0x00001008: ("ActionTypeID", "US"),
    0x00001020: ("NumberOfRemainingSuboperations", "US"),
    0x00001021: ("NumberOfCompletedSuboperations", "US"),
    0x00001022: ("NumberOfFailedSuboperations", "US"),
    0x00001023: ("NumberOfWarningSuboperations", "US"),
    0x00001030: ("MoveOriginatorApplicationEntityTitle", "AE"),
    0x00001031: ("MoveOriginatorMessageID", "US"),
}
_TAG_OF = {keyword: tag for tag, (keyword, _) in COMMAND_ELEMENTS.items()}


class CommandError(ValueError):
    """A command set that cannot be decoded."""


@dataclass
class Command:
    """A decoded command set: keyword -> value (int, str or list of tags)."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self.__dict__["values"][keyword]
        except KeyError:
            if keyword in _TAG_OF:
                return None
            raise AttributeError(keyword) from None

    @property
    def field(self) -> int:
        return int(self.values.get("CommandField", -1))

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.field, f"command 0x{self.field:04X}")

    @property
    def has_dataset(self) -> bool:
        return self.values.get("CommandDataSetType", NO_DATASET) != NO_DATASET

    @property
    def sop_class_uid(self) -> str:
        return self.AffectedSOPClassUID or self.RequestedSOPClassUID or ""

    @property
    def sop_instance_uid(self) -> str:
        return self.AffectedSOPInstanceUID or self.RequestedSOPInstanceUID or ""


def _elements(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise CommandError("command set ends inside an element header")
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if pos + length > end:
            raise CommandError(f"element ({group:04X},{elem:04X}) runs past the command set")
        yield (group << 16) | elem, data[pos : pos + length]
        pos += length


def decode_command(data: bytes) -> Command:
    values: dict[str, Any] = {}
    for tag, raw in _elements(data):
        if tag >> 16 != 0:
            raise CommandError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) in a command set")
        known = COMMAND_ELEMENTS.get(tag)
        if known is None:
            continue  # retired or private command elements are ignored
        keyword, kind = known
        if kind == "US":
            if len(raw) != 2:
                raise CommandError(f"{keyword} has length {len(raw)}, expected 2")
            values[keyword] = struct.unpack("<H", raw)[0]
        elif kind == "UL":
            values[keyword] = struct.unpack("<I", raw)[0] if len(raw) == 4 else 0
        elif kind == "AT":
            values[keyword] = [
                (g << 16) | e for g, e in struct.iter_unpack("<HH", raw[: len(raw) // 4 * 4])
            ]
        else:
            values[keyword] = raw.rstrip(b"\x00 ").decode("ascii", "replace")
    if "CommandField" not in values:
        raise CommandError("command set has no Command Field (0000,0100)")
    return Command(values)


def _encode_value(kind: str, value: Any) -> bytes:
    if kind == "US":
        return struct.pack("<H", value)
    if kind == "UL":
        return struct.pack("<I", value)
    if kind == "AT":
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in value)
    # A response echoes the request's UIDs and may quote the data set in ErrorComment:
    # a peer's non-ASCII bytes (decoded as U+FFFD) go back as "?", never an exception.
    raw = str(value).encode("ascii", "replace")
    if len(raw) % 2:
        raw += b"\x00" if kind == "UI" else b" "
    return raw


def encode_command(**values: Any) -> bytes:
    """Encode a command set from keywords; None values are left out."""
    body = bytearray()
    for tag in sorted(_TAG_OF[k] for k, v in values.items() if v is not None):
        keyword, kind = COMMAND_ELEMENTS[tag]
        raw = _encode_value(kind, values[keyword])
        body += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw)) + raw
    return struct.pack("<HHII", 0, 0, 4, len(body)) + bytes(body)


def response_for(request: Command, status: int, **extra: Any) -> bytes:
    """The response command set answering ``request`` (same SOP class/instance, no data set
    unless the caller says otherwise with CommandDataSetType)."""
    values: dict[str, Any] = {
        "CommandField": request.field | 0x8000,
        "MessageIDBeingRespondedTo": request.MessageID,
        "AffectedSOPClassUID": request.sop_class_uid or None,
        "AffectedSOPInstanceUID": request.sop_instance_uid or None,
        "Status": status,
        "CommandDataSetType": NO_DATASET,
    }
    values.update(extra)  # e.g. the SOP Instance UID an N-CREATE SCP assigned
    return encode_command(**values)
