"""C-MOVE and C-GET SCP: the identifier picks stored instances through the index, and each
goes out as a C-STORE sub-operation, streamed from its file.

C-MOVE opens an association to the named destination (a configured [[remote]]); C-GET
sends on the requestor's own association, which it opened with the SCP role for
storage. Pending responses carry the remaining/completed/failed/warning counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from dicombox.core.audit_subjects import AuditSubjects
from dicombox.core.box import Box
from dicombox.core.net.outbound import AssociationFailed, Proposal, RequestorAssociation
from dicombox.core.net.policy import may_move_to
from dicombox.core.net.requestor import destination_of
from dicombox.core.net.sending import StoredFile, syntaxes_to_offer
from dicombox.core.net.service import Reply, Request
from dicombox.plugins.qr.find import (
    QueryError,
    decode_identifier,
    encode_identifier,
    instances_select,
    parse_query,
)
from dicombox.plugins.qr.models import BY_GET_UID, BY_MOVE_UID, Model

log = logging.getLogger("dicombox.qr")

SUCCESS, PENDING, CANCELLED, WARNING = 0x0000, 0xFF00, 0xFE00, 0xB000
UNKNOWN_DESTINATION, UNABLE_SUBOPERATIONS, UNABLE_TO_PROCESS = 0xA801, 0xA702, 0xC000
NOT_AUTHORIZED = 0x0124

Sender = Callable[[StoredFile], int]  # one sub-operation: the peer's C-STORE status


@dataclass
class Tally:
    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def count(self, item: StoredFile, status: int) -> None:
        self.remaining -= 1
        if status == 0x0000 or status == 0x0111:  # a duplicate at the peer is delivered
            self.completed += 1
        elif status & 0xF000 == 0xB000:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(item.sop_instance_uid)

    def fields(self, final: bool = False) -> dict[str, int]:
        counts = {
            "NumberOfCompletedSuboperations": self.completed,
            "NumberOfFailedSuboperations": self.failed,
            "NumberOfWarningSuboperations": self.warning,
        }
        if not final:
            counts["NumberOfRemainingSuboperations"] = self.remaining
        return counts


class RetrieveSCP:
    def __init__(self, box: Box) -> None:
        self.box = box

    def _instances(self, request: Request, model: Model) -> list[StoredFile]:
        identifier = decode_identifier(request.dataset.data, request.context.transfer_syntax)
        query = parse_query(identifier, model, case_insensitive=False)
        with self.box.index.engine.connect() as conn:
            rows = conn.execute(instances_select(query)).all()
        root = self.box.store.root
        return [
            StoredFile(root / r.path, r.sop_class_uid, r.sop_instance_uid, r.transfer_syntax_uid)
            for r in rows
        ]

    def _refusal(self, request: Request, model: Model) -> tuple[list[StoredFile], Reply | None]:
        try:
            return self._instances(request, model), None
        except QueryError as exc:
            return [], Reply(exc.status, fields={"ErrorComment": str(exc)[:64]})
        except Exception as exc:
            log.warning("retrieve identifier from %s unreadable: %s", request.peer.calling_ae, exc)
            return [], Reply(UNABLE_TO_PROCESS, fields={"ErrorComment": "bad identifier"})

    def _refuse_destination(self, request: Request, destination: str) -> Reply:
        peer = request.peer
        why = f"{peer.calling_ae} may not move to {destination} ([[remote]] move_destinations)"
        log.warning("C-MOVE refused: %s", why)
        self.box.bus.publish(
            "security.refused", permission="move", command="C-MOVE-RQ", why=why,
            **peer.event_fields(),
        )  # fmt: skip
        return Reply(NOT_AUTHORIZED, fields={"ErrorComment": why[:64]})

    def handle_move(self, request: Request) -> Iterator[Reply]:
        model = BY_MOVE_UID[request.context.abstract_syntax]
        name = (request.command.MoveDestination or "").strip()
        remotes = self.box.config.remote_by_ae(name)
        if not remotes:
            log.warning("C-MOVE from %s to unknown destination %r", request.peer.calling_ae, name)
            yield Reply(UNKNOWN_DESTINATION, fields={"ErrorComment": f"unknown destination {name}"})
            return
        peer = request.peer
        if not may_move_to(self.box.config, peer.calling_ae, peer.address, name):
            yield self._refuse_destination(request, name)
            return
        items, refusal = self._refusal(request, model)
        if refusal:
            yield refusal
            return
        remote = remotes[0]
        destination = destination_of(remote)
        proposals = sorted(
            {Proposal(i.sop_class_uid, syntaxes_to_offer(i.transfer_syntax_uid)) for i in items},
            key=lambda p: (p.abstract_syntax, p.transfer_syntaxes),
        )
        tally = Tally(len(items))
        if not items:
            yield Reply(SUCCESS, fields=tally.fields(final=True))
            return
        try:
            assoc = RequestorAssociation.open(
                destination, self.box.config.box.ae_title, proposals, self.box.config.network
            )
        except AssociationFailed as exc:
            log.warning("C-MOVE to %s: %s", destination, exc)
            yield Reply(UNABLE_SUBOPERATIONS, fields={"ErrorComment": str(exc)[:64]})
            return
        originator = (request.peer.calling_ae, request.command.MessageID)

        def send(item: StoredFile) -> int:
            return assoc.store(item, syntaxes_to_offer(item.transfer_syntax_uid), originator)

        try:
            yield from self._suboperations(request, items, tally, send, "C-MOVE", destination.name)
        finally:
            assoc.release()

    def handle_get(self, request: Request) -> Iterator[Reply]:
        model = BY_GET_UID[request.context.abstract_syntax]
        items, refusal = self._refusal(request, model)
        if refusal:
            yield refusal
            return
        tally = Tally(len(items))
        assert request.store_back is not None, "the host supports sub-operations on C-GET"
        yield from self._suboperations(
            request, items, tally, request.store_back, "C-GET", request.peer.calling_ae
        )

    def _suboperations(
        self,
        request: Request,
        items: list[StoredFile],
        tally: Tally,
        send: Sender,
        verb: str,
        target: str,
    ) -> Iterator[Reply]:
        # What is about to go where, per study and patient, for the audit trail (PS3.15
        # Begin Transferring / Instances Transferred).
        studies = AuditSubjects(self.box.index.engine).summarize(
            (i.sop_class_uid, i.sop_instance_uid) for i in items
        )
        who = request.peer.event_fields()
        self.box.bus.publish(
            "retrieve.started", verb=verb, target=target, study_summary=studies, **who
        )
        try:  # what went is audited however it ends: done, cancelled, or broken off
            for item in items:
                if request.cancelled():
                    yield self._final(CANCELLED, tally, request)
                    return
                try:
                    status = send(item)
                except (LookupError, OSError, ValueError) as exc:
                    uid = item.sop_instance_uid
                    log.warning("%s of %s to %s failed: %s", verb, uid, target, exc)
                    status = UNABLE_SUBOPERATIONS
                except AssociationFailed as exc:
                    log.warning("%s to %s broke off: %s", verb, target, exc)
                    tally.count(item, UNABLE_SUBOPERATIONS)
                    for rest in items[items.index(item) + 1 :]:
                        tally.count(rest, UNABLE_SUBOPERATIONS)
                    break
                tally.count(item, status)
                if tally.remaining:
                    yield Reply(PENDING, fields=tally.fields())
        finally:
            self.box.bus.publish(
                "retrieve.done",
                verb=verb,
                target=target,
                study_summary=studies,
                **who,
                completed=tally.completed,
                failed=tally.failed,
                warning=tally.warning,
            )
        if tally.failed == 0 and tally.warning == 0:
            yield self._final(SUCCESS, tally, request)
        elif tally.completed + tally.warning == 0:
            yield self._final(UNABLE_SUBOPERATIONS, tally, request)
        else:
            yield self._final(WARNING, tally, request)

    def _final(self, status: int, tally: Tally, request: Request) -> Reply:
        dataset = None
        if tally.failed_uids and status != SUCCESS:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = tally.failed_uids
            dataset = encode_identifier(ds, request.context.transfer_syntax)
        return Reply(status, dataset=dataset, fields=tally.fields(final=True))
