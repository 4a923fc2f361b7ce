"""Sending stored instances: C-STORE requests streamed straight from the store's files.

Used on both sides of an association: as requestor (C-MOVE sub-operations, forwarding)
through ``RequestorAssociation``, and as acceptor for C-GET sub-operations on the
peer's own association. A file goes out in the transfer syntax it was stored in, read
in PDU-sized pieces and never decoded; when the peer accepted another syntax for it,
the data set is transcoded in memory first (``core.transcode``). On a C-GET association
the box is the acceptor but also the sender: it picks the syntax of each context it will
send on itself (``prefer_sendable_syntaxes``), then each instance's (``context_to_send_on``).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from dicombox.core.header import dataset_offset
from dicombox.core.net import commands, pdu
from dicombox.core.net.service import AcceptedContext
from dicombox.core.transcode import can_transcode, transcode, why_not

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


def sendable_syntax(offered: Iterable[str], supported: Iterable[str]) -> str | None:
    """The syntax to accept for a context on which the box will send stored instances (a
    C-GET requestor took the SCP role for the class), or None to keep the usual choice.
    The box does not know yet which instances it will send on it, so it takes a syntax it
    can make of every one, a native one, whenever the peer offers one: the syntax a
    receiver would prefer (JPEG Lossless, say) would fail every instance stored otherwise."""
    usable = set(offered) & set(supported)
    return next((s for s in NATIVE_SYNTAXES if s in usable), None)


def prefer_sendable_syntaxes(
    results: Iterable[Any], proposed: Iterable[Any], supported: Iterable[Any]
) -> None:
    """Change, in pynetdicom's negotiation ``results``, the syntax of each accepted
    context where the box is the SCU (``sendable_syntax``); ``proposed`` and
    ``supported`` are the requestor's and the box's contexts the results came from."""
    offered = {int(cx.context_id): [str(s) for s in cx.transfer_syntax] for cx in proposed}
    ours = {str(cx.abstract_syntax): [str(s) for s in cx.transfer_syntax] for cx in supported}
    for cx in results:
        if cx.result != 0 or not cx.as_scu:
            continue
        chosen = sendable_syntax(
            offered.get(int(cx.context_id), []), ours.get(str(cx.abstract_syntax), [])
        )
        if chosen is not None:
            cx.transfer_syntax = [chosen]


def context_to_send_on(item: StoredFile, contexts: Iterable[AcceptedContext]) -> AcceptedContext:
    """The context to C-STORE ``item`` on to the requestor of a C-GET: of its class, with
    the box as SCU, in the syntax it is stored in, else in one it can be transcoded to.
    None found: LookupError saying why, and whose doing it is."""
    stored = item.transfer_syntax_uid
    # Only where role selection made the box the SCU: a peer that did not take the SCP
    # role for the class may refuse the C-STORE or abort (PS3.4 C.4.3.1).
    usable = [cx for cx in contexts if cx.abstract_syntax == item.sop_class_uid and cx.as_scu]
    for syntax in syntaxes_to_offer(stored):  # as stored, else decoded to native
        for cx in usable:
            if cx.transfer_syntax == syntax:
                return cx
    for cx in usable:  # else in any other syntax the box can encode it in without loss
        if can_transcode(stored, cx.transfer_syntax):
            return cx
    if not usable:
        raise LookupError(
            f"the requestor opened no context for {item.sop_class_uid} with SCP/SCU role "
            "selection making it the SCP, so the box may not send it one"
        )
    accepted = sorted({cx.transfer_syntax for cx in usable})
    reasons = "; ".join(f"{target}: {why_not(stored, target)}" for target in accepted)
    raise LookupError(
        f"stored in {stored}, which this box cannot send in any syntax it accepted for "
        f"{item.sop_class_uid} on this association ({reasons})"
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
