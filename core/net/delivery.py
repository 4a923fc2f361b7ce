"""Delivering stored instances to a remote on one association: the forwarding path.

The remote's ``transfer_syntaxes`` set our order of preference; each (SOP class, syntax)
is proposed as a context of its own, so the order is ours and not the acceptor's. An
instance goes out in the first accepted syntax it can be turned into (as stored when
possible; else transcoded). Each C-STORE status is classed as the job runner needs it:
delivered (0000, 0111 duplicate, Bxxx warning), refused for good, or worth a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from dicombox.core.config import NetworkSection, RemoteSection
from dicombox.core.net.outbound import AssociationFailed, Proposal, RequestorAssociation
from dicombox.core.net.requestor import Destination
from dicombox.core.net.sending import NATIVE_SYNTAXES, StoredFile
from dicombox.core.syntaxes import syntax_uid
from dicombox.core.transcode import can_transcode

log = logging.getLogger("dicombox.forward")

MAX_CONTEXTS = 128
DUPLICATE_AT_PEER = 0x0111


@dataclass(frozen=True)
class OutboundPolicy:
    """What one remote accepts, from its [[remote]] section."""

    syntaxes: tuple[str, ...] = ()  # preference order; empty: as stored, else native
    sop_classes: frozenset[str] = frozenset()  # empty: any
    allow_lossy: bool = False

    @classmethod
    def of(cls, remote: RemoteSection | None) -> OutboundPolicy:
        if remote is None:
            return cls()
        syntaxes = tuple(s for s in (syntax_uid(n) for n in remote.transfer_syntaxes) if s)
        return cls(syntaxes, frozenset(remote.sop_classes), remote.allow_lossy)

    def syntaxes_for(self, stored: str) -> tuple[str, ...]:
        """What may carry an instance stored in ``stored``, best first."""
        wanted = self.syntaxes or (stored, *(s for s in NATIVE_SYNTAXES if s != stored))
        return tuple(s for s in wanted if can_transcode(stored, s, self.allow_lossy))


@dataclass
class DeliveryReport:
    delivered: list[StoredFile] = field(default_factory=list)
    warnings: int = 0
    refused: list[tuple[StoredFile, str]] = field(default_factory=list)  # for good
    deferred: list[tuple[StoredFile, str]] = field(default_factory=list)  # try again later

    @property
    def summary(self) -> str:
        parts = [f"{len(self.delivered)} delivered"]
        if self.warnings:
            parts.append(f"{self.warnings} with a warning")
        if self.refused:
            parts.append(f"{len(self.refused)} refused ({self.refused[0][1]})")
        if self.deferred:
            parts.append(f"{len(self.deferred)} to retry ({self.deferred[0][1]})")
        return ", ".join(parts)


class DeliveryInterrupted(Exception):
    """The peer broke off midway; ``report`` holds what it had taken by then."""

    def __init__(self, report: DeliveryReport, why: str) -> None:
        super().__init__(why)
        self.report = report


def proposals_for(items: list[StoredFile], policy: OutboundPolicy) -> list[Proposal]:
    """One context per (class, syntax) in preference order, at most 128 in all: the
    best syntax of every class first, then the second best, and so on."""
    per_class: dict[str, list[str]] = {}
    for item in items:
        options = per_class.setdefault(item.sop_class_uid, [])
        for syntax in policy.syntaxes_for(item.transfer_syntax_uid):
            if syntax not in options:
                options.append(syntax)
    proposals: list[Proposal] = []
    depth = max((len(v) for v in per_class.values()), default=0)
    for rank in range(depth):
        for sop_class, syntaxes in per_class.items():
            if rank < len(syntaxes) and len(proposals) < MAX_CONTEXTS:
                proposals.append(Proposal(sop_class, (syntaxes[rank],)))
    return proposals


def deliver(
    items: list[StoredFile],
    destination: Destination,
    calling_ae: str,
    network: NetworkSection,
    policy: OutboundPolicy,
    progress: Callable[[int, int], None] = lambda done, total: None,
    acknowledged: Callable[[StoredFile], None] = lambda item: None,
) -> DeliveryReport:
    """Send ``items`` on one association. A peer that cannot be reached raises
    ``AssociationFailed``; one that breaks off midway, ``DeliveryInterrupted``.
    ``acknowledged`` hears of each delivered item as soon as its status is read, so
    the caller can record it before the association ends (or the box dies)."""
    report = DeliveryReport()
    sendable = []
    for item in items:
        if not policy.sop_classes or item.sop_class_uid in policy.sop_classes:
            sendable.append(item)
        else:
            report.refused.append((item, f"{destination.name or destination} takes no such class"))
    if not sendable:
        return report
    with RequestorAssociation.open(
        destination, calling_ae, proposals_for(sendable, policy), network
    ) as assoc:
        for n, item in enumerate(sendable, start=1):
            syntaxes = policy.syntaxes_for(item.transfer_syntax_uid)
            try:
                status = assoc.store(item, syntaxes)
            except LookupError:
                report.refused.append((item, "no accepted context for its class and syntax"))
                continue
            except AssociationFailed as exc:
                raise DeliveryInterrupted(report, str(exc)) from None
            except (OSError, ValueError) as exc:  # a file gone, a transcoding impossible
                log.warning("cannot send %s: %s", item.sop_instance_uid, exc)
                report.refused.append((item, str(exc)))
                continue
            if _classify(report, item, status):
                acknowledged(item)
            progress(n, len(sendable))
    return report


def _classify(report: DeliveryReport, item: StoredFile, status: int) -> bool:
    """File ``item`` under its status in ``report``; True if it was delivered."""
    if status in (0x0000, DUPLICATE_AT_PEER) or status & 0xF000 == 0xB000:
        report.delivered.append(item)
        report.warnings += status & 0xF000 == 0xB000
        return True
    if status & 0xFF00 == 0xA700:  # out of resources at the peer: may pass
        report.deferred.append((item, f"status 0x{status:04X}"))
    else:
        report.refused.append((item, f"status 0x{status:04X}"))
    return False
