"""What a plugin hands the network host: the services it provides as association acceptor.

A ``Service`` names the presentation contexts it accepts and, per DIMSE command, the
handler that answers it. A handler receives a ``Request`` and yields ``Reply`` items (one
for C-STORE or C-ECHO, several pending ones and a final one for C-FIND, C-MOVE, C-GET).
A handler that wants a data set somewhere other than in memory (C-STORE streams it to the
store) supplies a ``DatasetSink`` factory for its command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dicombox.core.net.commands import Command


@dataclass(frozen=True)
class SupportedContext:
    """An abstract syntax we accept, with transfer syntaxes in order of preference.

    ``scu_role``/``scp_role`` answer SCP/SCU Role Selection (None = default roles only)."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scu_role: bool | None = None
    scp_role: bool | None = None


@dataclass(frozen=True)
class AcceptedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    # The box's roles for the class as negotiated (PS3.7 D.3.3.4); without role selection
    # the requestor is the SCU and the box, accepting, the SCP.
    as_scu: bool = False
    as_scp: bool = True


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an association."""

    calling_ae: str
    called_ae: str
    address: str
    port: int
    max_pdu: int  # the peer's maximum PDU length, 0 = unlimited
    implementation_class_uid: str = ""
    implementation_version: str = ""
    association_id: str = ""

    def event_fields(self) -> dict[str, Any]:
        """Who is asking, as events (and so the audit trail) name a peer."""
        return {
            "association": self.association_id,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "peer_host": self.address,
            "peer_port": self.port,
        }


class DatasetSink(Protocol):
    """Where the fragments of one data set go while they arrive."""

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None:
        """The last fragment has arrived."""

    def discard(self) -> None:
        """The association ended before the data set was complete; keep nothing."""


class MemorySink:
    """The default sink: collects a (small) data set in memory, up to ``limit`` bytes."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self.overflowed = False

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            self.overflowed = True
            self._parts.clear()
            return
        self._parts.append(chunk)

    def close(self) -> None:
        pass

    def discard(self) -> None:
        self._parts.clear()

    @property
    def data(self) -> bytes:
        return b"".join(self._parts)


@dataclass
class Request:
    """One DIMSE request as a handler sees it."""

    command: Command
    context: AcceptedContext
    peer: Peer
    dataset: Any = None  # the closed DatasetSink, or None when no data set came
    # Has the peer sent a C-CANCEL-RQ for this request? Handlers that answer with many
    # pending responses (C-FIND, C-MOVE, C-GET) ask between them.
    cancelled: Callable[[], bool] = lambda: False
    # C-STORE a stored file back to the peer on this association (C-GET sub-operations);
    # returns the peer's status. None where the host cannot.
    store_back: Callable[[Any], int] | None = None
    # Send an N-EVENT-REPORT-RQ (command fields by keyword, encoded data set) to the peer
    # on this association once the reply is out; returns the peer's status.
    event_report: Callable[[dict[str, Any], bytes], int] | None = None
    # The SOP Class Extended Negotiation accepted for this context's SOP class (b"": none).
    extended: bytes = b""


@dataclass
class Reply:
    """One response message: its status, optional data set (already encoded in the
    context's transfer syntax) and any further command elements (by keyword)."""

    status: int
    dataset: bytes | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    # A few words on what the request did that its status cannot say ("12 sent to
    # PACS"), for the line logged when the association ends; repeats are counted.
    summary: str = ""


Handler = Callable[[Request], Iterable[Reply]]
SinkFactory = Callable[[Request], DatasetSink]


@dataclass
class Service:
    """A DICOM service a plugin provides as association acceptor."""

    name: str
    contexts: list[SupportedContext]
    handlers: dict[int, Handler]  # Command Field of the request -> handler
    # Command Field -> the permission ([[remote]] services) a caller needs for it. A
    # command not named here is open to every caller the association policy let in.
    permissions: dict[int, str] = field(default_factory=dict)
    sinks: dict[int, SinkFactory] = field(default_factory=dict)
    # Called AE titles this service answers on; empty = the box's own AE title.
    ae_titles: tuple[str, ...] = ()
    # Accept abstract syntaxes not in ``contexts`` (promiscuous storage): this callable
    # decides, and ``fallback_transfer_syntaxes`` are offered for them.
    accepts_unknown: Callable[[str], bool] | None = None
    fallback_transfer_syntaxes: tuple[str, ...] = ()
    # SOP Class Extended Negotiation (PS3.7 D.3.3.5): given what the requestor proposed
    # for one of our SOP classes, what we accept (None: no reply, nothing extended).
    extended_negotiation: Callable[[bytes], bytes | None] | None = None
    # Called with the association's id (Peer.association_id) once it has ended, however
    # it ended: a service keeping state per association (a print session) drops it.
    association_ended: Callable[[str], None] | None = None
