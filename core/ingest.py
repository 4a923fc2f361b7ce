"""Taking a received data set into the box: check, place durably, index, announce.

Every way an instance arrives (a C-STORE, a C-GET the box asked for, an import from
media) ends here, so duplicates, durability and the index behave the same for all. The
data set has been streamed into an ``IncomingFile`` as it arrived; ``Ingest.finish``
answers with the DICOM status to give. Success (0000) means the file is fsynced in its
final place and its row is committed to the index. Pixel data is never decoded: a header
walk checks the data set is whole and keeps the elements the index needs.
"""

from __future__ import annotations

import logging
import struct
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dicombox.core.box import Box
from dicombox.core.coercion import coerce_file
from dicombox.core.header import Truncated, scan_header, value_of
from dicombox.core.index.study_index import StoredInstance
from dicombox.core.instance_locks import InstanceLocks
from dicombox.core.outbox import route_jobs
from dicombox.core.store import IncomingFile, StoreFull, file_meta

log = logging.getLogger("dicombox.ingest")

SUCCESS = 0x0000
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
# What reading a received data set raises when the bytes are not a data set: C000.
DATA_REJECTIONS = (InvalidDicomError, Truncated, ValueError, EOFError, KeyError, OSError,
                   struct.error)  # fmt: skip
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class CoercionFailed(Exception):
    """Coercion failed once it had begun to rewrite the file: it cannot be stored."""


class Refused:
    """Stands in for the temporary file when there is no room: the data set is drained
    from the network and dropped, and the answer is A700."""

    def __init__(self, why: str) -> None:
        self.why = why

    def write(self, chunk: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


@dataclass(frozen=True)
class Arrival:
    """Where a data set came from and what its command said it is."""

    transfer_syntax: str
    source_ae: str
    sop_class_uid: str = ""  # as the command announced it ("" = not checked)
    sop_instance_uid: str = ""
    association: str = ""


@dataclass
class Outcome:
    status: int
    comment: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Ingest:
    def __init__(self, box: Box) -> None:
        self.box = box
        self.policy = box.config.storage.duplicates
        net = box.config.network
        self._identity = (net.implementation_class_uid, net.implementation_version)
        self.locks = InstanceLocks(box.run_dir / "instance-locks")

    def open(self, arrival: Arrival) -> IncomingFile | Refused:
        """Where the data set goes while it arrives."""
        header = file_meta(
            arrival.sop_class_uid,
            arrival.sop_instance_uid,
            arrival.transfer_syntax,
            arrival.source_ae,
            *self._identity,
        )
        try:
            return self.box.store.begin(header)
        except StoreFull as exc:
            return Refused(str(exc))
        except OSError as exc:  # no inode left, a read-only volume, no descriptor left
            log.error("cannot begin a temporary file for %s: %s", arrival.sop_instance_uid, exc)
            return Refused(f"cannot create a temporary file: {exc.strerror or exc}")

    def prepare(self) -> None:
        """Ready the store for the next data set (see ``InstanceStore.prepare``)."""
        self.box.store.prepare()

    def finish(self, sink: IncomingFile | Refused, arrival: Arrival) -> Outcome:
        """Take the complete data set in, announce it, and say which status to answer."""
        outcome = self.take(sink, arrival)
        self.announce(outcome, arrival)
        return outcome

    def announce(self, outcome: Outcome, arrival: Arrival) -> None:
        """Publish what became of an instance (the event bus, hence the audit trail and
        the consoles), and log a refusal. The C-STORE SCP calls this once the peer has its
        answer: nothing in it decides the answer, so the sender need not wait for it."""
        stored = outcome.status in (SUCCESS, DUPLICATE)
        self.box.bus.publish(
            "instance.stored" if stored else "instance.rejected",
            sop_instance_uid=arrival.sop_instance_uid,
            sop_class_uid=arrival.sop_class_uid,
            calling_ae=arrival.source_ae,
            association=arrival.association,
            status=f"{outcome.status:04X}",
            **({"reason": outcome.comment} if outcome.comment else {}),
            **outcome.extra,
        )
        if outcome.status != SUCCESS:
            log.warning(
                "instance %s from %s: status %04X %s",
                arrival.sop_instance_uid,
                arrival.source_ae,
                outcome.status,
                outcome.comment,
            )

    def take(self, sink: IncomingFile | Refused, arrival: Arrival) -> Outcome:
        """Take the complete data set in (stored, indexed with its routes' jobs) and say
        which status to answer; ``announce`` tells the rest of the box afterwards."""
        if isinstance(sink, Refused):
            return Outcome(OUT_OF_RESOURCES, sink.why)
        if sink.full:
            sink.discard()
            return Outcome(OUT_OF_RESOURCES, "the data volume filled up while receiving")
        try:
            ds = self._scan(sink, arrival)
        except DATA_REJECTIONS as exc:
            sink.discard()
            return Outcome(CANNOT_UNDERSTAND, f"data set cannot be parsed: {exc}")
        problem = _mismatch(ds, arrival)
        if problem:
            sink.discard()
            return Outcome(DATASET_MISMATCH, problem)
        try:
            coerced = self._coerced(sink, ds, arrival)
        except CoercionFailed as exc:
            sink.discard()
            if sink.full:
                return Outcome(OUT_OF_RESOURCES, "the data volume filled up while coercing")
            return Outcome(PROCESSING_FAILURE, str(exc))
        if sink.full:  # the coerced copy found no room: what is in the file is not whole
            sink.discard()
            return Outcome(OUT_OF_RESOURCES, "the data volume filled up while coercing")
        return self._place(sink, coerced, arrival)

    def _scan(self, sink: IncomingFile, arrival: Arrival) -> pydicom.Dataset:
        """Walk the received data set's headers, keeping what the index needs."""
        return scan_header(
            sink.path,
            sink.header_length,
            sink.header_length + sink.size,
            arrival.transfer_syntax,
            self.box.index.header_tags,
            bytes(sink.head),
        )

    def _coerced(
        self, sink: IncomingFile, ds: pydicom.Dataset, arrival: Arrival
    ) -> pydicom.Dataset:
        """The header after any coercion plugins ask for; the original if none do, or if
        the change fails (the instance is then stored as received, and that is logged)."""
        context = {"calling_ae": arrival.source_ae}
        uid = arrival.sop_instance_uid or value_of(ds, "SOPInstanceUID")
        try:
            hook = self.box.hook.dicombox_coerce
            coercions = [c for c in hook(box=self.box, dataset=ds, context=context) if c]
            if not coercions:
                return ds
            changed = coerce_file(sink, coercions, self.box.config.box.ae_title, arrival.source_ae)
            if not changed:
                return ds
            coerced = self._scan(sink, arrival)
        except Exception as exc:
            if sink.rewritten:  # the file holds neither what arrived nor the coerced copy
                log.exception("coercing %s failed after its file was rewritten", uid)
                raise CoercionFailed(f"coercion failed after rewriting the file: {exc}") from exc
            log.exception("coercing %s failed; it is stored as received", uid)
            return ds
        self.box.bus.publish(
            "instance.coerced",
            sop_instance_uid=uid,
            calling_ae=arrival.source_ae,
            changed=changed,
            reason="; ".join(c.reason for c in coercions),
        )
        return coerced

    def _place(self, sink: IncomingFile, ds: pydicom.Dataset, arrival: Arrival) -> Outcome:
        # From its name to its index row, no other copy of the instance may look.
        with ExitStack() as held:
            try:
                held.enter_context(self.locks.held(value_of(ds, "SOPInstanceUID")))
            except OSError as exc:  # no descriptor or inode left for the lock file
                sink.discard()
                return Outcome(OUT_OF_RESOURCES, f"cannot lock the instance: {exc}")
            return self._place_locked(sink, ds, arrival)

    def _place_locked(self, sink: IncomingFile, ds: pydicom.Dataset, arrival: Arrival) -> Outcome:
        sop_uid = value_of(ds, "SOPInstanceUID")
        box, policy = self.box, self.policy
        copies = 0

        def on_conflict() -> int | None:
            # A file already has this instance's name: a duplicate, or (if the index does
            # not know it) what a power cut left half-written, which the new copy replaces.
            nonlocal copies
            copies = box.index.copies_of(sop_uid)
            if copies == 0 or policy == "replace":
                return 0
            return copies if policy == "keep-both" else None

        size = sink.header_length + sink.size
        try:
            relpath = box.store.place(
                sink,
                value_of(ds, "StudyInstanceUID"),
                value_of(ds, "SeriesInstanceUID"),
                sop_uid,
                on_conflict,
            )
        except StoreFull as exc:
            return Outcome(OUT_OF_RESOURCES, str(exc))
        except SQLAlchemyError as exc:  # the duplicate check found the index unavailable
            log.error("instance %s: the index cannot say if it is a duplicate: %s", sop_uid, exc)
            return Outcome(OUT_OF_RESOURCES, f"index unavailable: {exc}")
        if relpath is None:  # it is at its place already: the audit can name its study
            return _kept_first(policy, {"study_instance_uid": value_of(ds, "StudyInstanceUID")})
        try:
            outcome = self._index_and_route(ds, arrival, sop_uid, relpath, size, copies)
            if outcome.status != SUCCESS:
                box.store.restore_previous(sink)  # a copy it replaced is served again
            return outcome
        finally:
            box.store.settle(sink)

    def _index_and_route(
        self,
        ds: pydicom.Dataset,
        arrival: Arrival,
        sop_uid: str,
        relpath: str,
        size: int,
        copies: int,
    ) -> Outcome:
        """Record a placed instance in the index, with its routes' jobs in the same
        transaction (the outbox: see core/outbox.py)."""
        box, policy = self.box, self.policy
        duplicate = copies > 0
        copy = copies if duplicate and policy == "keep-both" else 0
        placed = StoredInstance(
            sop_uid,
            value_of(ds, "SOPClassUID"),
            value_of(ds, "StudyInstanceUID"),
            value_of(ds, "SeriesInstanceUID"),
            relpath,
            copy,
            arrival.source_ae,
        )
        try:
            outbox = route_jobs(box, placed, ds)
        except Exception as exc:  # never stored without its routes
            log.exception("the routes of %s cannot be worked out", sop_uid)
            self._drop(relpath, duplicate)
            return Outcome(PROCESSING_FAILURE, f"its routes cannot be worked out: {exc}")
        try:
            stored = box.index.add_instance(
                ds,
                path=relpath,
                size=size,
                transfer_syntax_uid=arrival.transfer_syntax,
                calling_ae=arrival.source_ae,
                replace=duplicate and policy == "replace",
                copy=copy,
                outbox=outbox,
            )
        except IntegrityError:
            try:
                known = {r["path"] for r in box.index.instance_rows(sop_instance_uid=sop_uid)}
            except Exception as exc:
                return self._unindexed(relpath, duplicate, sop_uid, exc)
            if relpath in known:
                # The index knows the instance but its file was gone (removed by hand):
                # the new file has just taken its place, which restores it.
                log.warning("instance %s was indexed without its file; file restored", sop_uid)
                return Outcome(SUCCESS, "", {"path": relpath, "restored": True})
            if not known:  # no row for it after all: the write lost a race, say so
                return self._unindexed(relpath, duplicate, sop_uid, "no row was written")
            # Indexed under another study or series: a duplicate whose parent UIDs
            # changed. The first copy is kept; the new file would be served by nothing.
            box.store.path(relpath).unlink(missing_ok=True)
            return _kept_first(policy, {})
        except Exception as exc:  # the index is down or locked past its timeout
            return self._unindexed(relpath, duplicate, sop_uid, exc)
        extra: dict[str, Any] = {"path": relpath, "study_instance_uid": stored.study_instance_uid}
        try:
            box.hook.dicombox_on_stored(box=box, instance=stored, dataset=ds)
        except Exception:  # stored, indexed and routed: the answer is 0000 all the same
            log.exception("a plugin failed on stored instance %s", sop_uid)
        if duplicate:
            extra["duplicate"] = True
        return Outcome(SUCCESS, "", extra)

    def _unindexed(self, relpath: str, duplicate: bool, sop_uid: str, why: object) -> Outcome:
        """The file is placed but has no index row: never acknowledge it (A700)."""
        log.error("instance %s could not be indexed: %s", sop_uid, why)
        self._drop(relpath, duplicate)
        return Outcome(OUT_OF_RESOURCES, f"index unavailable: {why}")

    def _drop(self, relpath: str, duplicate: bool) -> None:
        """A placed file that gets no index row goes, unless it took the name of a copy
        the index still points to (which then gets its name back: ``restore_previous``)."""
        if not (duplicate and self.policy == "replace"):
            self.box.store.path(relpath).unlink(missing_ok=True)


def _kept_first(policy: str, extra: dict[str, Any]) -> Outcome:
    """A duplicate whose first copy stays: 0111 under ``reject``, else 0000."""
    status = DUPLICATE if policy == "reject" else SUCCESS
    return Outcome(
        status, "duplicate SOP instance; the first copy is kept", {"duplicate": True, **extra}
    )


def _mismatch(ds: pydicom.Dataset, arrival: Arrival) -> str:
    """Why the data set does not fit what its command announced (A900), or ''."""
    uids: dict[str, str] = {}
    for keyword in _REQUIRED_UIDS:
        value = value_of(ds, keyword)
        if value is not None and not isinstance(value, str):
            # A corrupt VR turns a UID into a number, a list or a sequence: no path, no row.
            return f"data set's {keyword} is not a UID"
        uids[keyword] = (value or "").strip()
        if not uids[keyword]:
            return f"data set has no {keyword}"
    if arrival.sop_class_uid and uids["SOPClassUID"] != arrival.sop_class_uid:
        return f"data set SOP class {uids['SOPClassUID']} is not {arrival.sop_class_uid}"
    if arrival.sop_instance_uid and uids["SOPInstanceUID"] != arrival.sop_instance_uid:
        return "data set SOP instance UID differs from the command's"
    return ""
