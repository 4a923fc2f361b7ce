"""Sending stored instances: C-STORE requests streamed straight from the store's files.

Used on both sides of an association: as requestor (C-MOVE sub-operations, forwarding)
through ``RequestorAssociation``, and as acceptor for C-GET sub-operations on the
peer's own association. A file goes out in the transfer syntax it was stored in, read
in PDU-sized pieces and never decoded; when the peer accepted another syntax for it,
the data set is transcoded in memory first (``core.transcode``).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from dicombox.core.header import dataset_offset
from dicombox.core.net import commands, pdu
from dicombox.core.transcode import can_transcode, transcode

NATIVE_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
_PIECE = 1 << 20  # the most read from a file for one PDU when the peer sets no maximum


@dataclass(frozen=True)
class StoredFile:
    """An instance of the store, as the sender needs it."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def syntaxes_to_offer(stored_syntax: str) -> tuple[str, ...]:
    """What to propose for a file: its own syntax first, then native ones it can be
    decoded to (for a peer that takes no compression)."""
    return (
        stored_syntax,
        *(s for s in NATIVE_SYNTAXES if s != stored_syntax and can_transcode(stored_syntax, s)),
    )


def _dataset_pieces(item: StoredFile, syntax: str, room: int) -> Iterator[bytes]:
    if syntax != item.transfer_syntax_uid:
        # The choice of syntax (lossy or not) was made when the contexts were proposed.
        data = BytesIO(transcode(item.path, syntax, allow_lossy=True))
        while piece := data.read(room):
            yield piece
        return
    with open(item.path, "rb") as f:
        f.seek(dataset_offset(item.path))
        while piece := f.read(room):
            yield piece


def send_store_request(
    io: pdu.PduSocket,
    context_id: int,
    syntax: str,
    peer_max_pdu: int,
    item: StoredFile,
    message_id: int,
    move_originator: tuple[str, int] | None = None,
) -> None:
    """Send one C-STORE-RQ with the file's data set; the caller reads the response."""
    command = commands.encode_command(
        CommandField=commands.C_STORE_RQ,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0,
        AffectedSOPClassUID=item.sop_class_uid,
        AffectedSOPInstanceUID=item.sop_instance_uid,
        MoveOriginatorApplicationEntityTitle=move_originator[0] if move_originator else None,
        MoveOriginatorMessageID=move_originator[1] if move_originator else None,
    )
    io.send(b"".join(pdu.p_data_pdus(context_id, command, True, peer_max_pdu)))
    room = (peer_max_pdu - 6) if peer_max_pdu else _PIECE
    pieces = _dataset_pieces(item, syntax, room)
    current = next(pieces, b"")
    for following in itertools.chain(pieces, [None]):
        control = 0x02 if following is None else 0x00
        header = struct.pack(
            ">BBIIBB", pdu.P_DATA_TF, 0, len(current) + 6, len(current) + 2, context_id, control
        )
        io.send(header + current)
        if following is None:
            break
        current = following
