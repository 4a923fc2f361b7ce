"""The C-STORE SCP: stream to a temporary file, check, place durably, index, then answer.

Success (0000) is sent only once the file is fsynced in its final place and its row is
committed to the index. Pixel data is never decoded on this path: the header is read
with pydicom up to the pixel data, and a header walk checks the data set is whole.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy.exc import IntegrityError

from dicombox.core.box import Box
from dicombox.core.header import Truncated, scan_header, value_of
from dicombox.core.net.service import Reply, Request
from dicombox.core.store import IncomingFile, StoreFull, file_meta

log = logging.getLogger("dicombox.storage")

SUCCESS = 0x0000
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


class _Refused:
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


class StorageSCP:
    def __init__(self, box: Box) -> None:
        self.box = box
        self.policy = box.config.storage.duplicates
        net = box.config.network
        self._identity = (net.implementation_class_uid, net.implementation_version)

    # The DatasetSink factory: where the data set of a C-STORE-RQ goes while it arrives.
    def open_sink(self, request: Request) -> IncomingFile | _Refused:
        command = request.command
        header = file_meta(
            command.AffectedSOPClassUID or request.context.abstract_syntax,
            command.AffectedSOPInstanceUID or "",
            request.context.transfer_syntax,
            request.peer.calling_ae,
            *self._identity,
        )
        try:
            return self.box.store.begin(header)
        except StoreFull as exc:
            return _Refused(str(exc))

    def handle(self, request: Request) -> Iterator[Reply]:
        sink = request.dataset
        status, comment, extra = self._store(request, sink)
        fields = {"ErrorComment": comment[:64]} if comment and status != SUCCESS else {}
        topic = "instance.stored" if status in (SUCCESS, DUPLICATE) else "instance.rejected"
        self.box.bus.publish(
            topic,
            sop_instance_uid=request.command.AffectedSOPInstanceUID,
            sop_class_uid=request.command.AffectedSOPClassUID,
            calling_ae=request.peer.calling_ae,
            association=request.peer.association_id,
            status=f"{status:04X}",
            **({"reason": comment} if comment else {}),
            **extra,
        )
        if status not in (SUCCESS,):
            log.warning(
                "C-STORE from %s of %s: status %04X %s",
                request.peer.calling_ae,
                request.command.AffectedSOPInstanceUID,
                status,
                comment,
            )
        yield Reply(status, fields=fields)

    def _store(self, request: Request, sink: Any) -> tuple[int, str, dict[str, Any]]:
        if isinstance(sink, _Refused):
            return OUT_OF_RESOURCES, sink.why, {}
        assert isinstance(sink, IncomingFile)
        if sink.full:
            sink.discard()
            return OUT_OF_RESOURCES, "the data volume filled up while receiving", {}
        try:
            ds = scan_header(
                sink.path,
                sink.header_length,
                sink.header_length + sink.size,
                request.context.transfer_syntax,
                self.box.index.header_tags,
            )
        except (
            InvalidDicomError,
            Truncated,
            ValueError,
            EOFError,
            KeyError,
            OSError,
            struct.error,
        ) as exc:
            sink.discard()
            return CANNOT_UNDERSTAND, f"data set cannot be parsed: {exc}", {}
        problem = _mismatch(ds, request)
        if problem:
            sink.discard()
            return DATASET_MISMATCH, problem, {}
        return self._place(sink, ds, request)

    def _place(
        self, sink: IncomingFile, ds: pydicom.Dataset, request: Request
    ) -> tuple[int, str, dict[str, Any]]:
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
            return OUT_OF_RESOURCES, str(exc), {}
        if relpath is None:
            status = DUPLICATE if policy == "reject" else SUCCESS
            return status, "duplicate SOP instance; the first copy is kept", {"duplicate": True}
        duplicate = copies > 0
        try:
            stored = box.index.add_instance(
                ds,
                path=relpath,
                size=size,
                transfer_syntax_uid=request.context.transfer_syntax,
                calling_ae=request.peer.calling_ae,
                replace=duplicate and policy == "replace",
                copy=copies if duplicate and policy == "keep-both" else 0,
            )
        except IntegrityError:
            # The index knows the instance but its file was gone (removed by hand): the
            # new file has just taken its place, which restores it.
            log.warning("instance %s was indexed without its file; file restored", sop_uid)
            return SUCCESS, "", {"path": relpath, "restored": True}
        except Exception as exc:  # the index is down or locked past its timeout
            log.exception("indexing %s failed", sop_uid)
            if not duplicate:
                box.store.path(relpath).unlink(missing_ok=True)
            return OUT_OF_RESOURCES, f"index unavailable: {exc}", {}
        box.hook.dicombox_on_stored(box=box, instance=stored, dataset=ds)
        extra = {"path": relpath, "study_instance_uid": stored.study_instance_uid}
        if duplicate:
            extra["duplicate"] = True
        return SUCCESS, "", extra


def _mismatch(ds: pydicom.Dataset, request: Request) -> str:
    """Why the data set does not fit its command (A900), or ''."""
    uids = {k: str(value_of(ds, k) or "").strip() for k in _REQUIRED_UIDS}
    for keyword, uid in uids.items():
        if not uid:
            return f"data set has no {keyword}"
    command = request.command
    if command.AffectedSOPClassUID and uids["SOPClassUID"] != command.AffectedSOPClassUID:
        return f"data set SOP class {uids['SOPClassUID']} is not {command.AffectedSOPClassUID}"
    if command.AffectedSOPInstanceUID and uids["SOPInstanceUID"] != command.AffectedSOPInstanceUID:
        return "data set SOP instance UID differs from the command's"
    return ""


_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
