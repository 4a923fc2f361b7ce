"""Storage commitment data sets (PS3.4 J.3): the request's references, and the report
that sorts them into committed and failed, checked against the index."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.index import schema

PUSH_MODEL = "1.2.840.10008.1.20.1"
PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMIT = 1  # N-ACTION Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # N-EVENT-REPORT Event Type IDs
NO_SUCH_INSTANCE, CLASS_INSTANCE_CONFLICT = 0x0112, 0x0119  # Failure Reason (0008,1197)


@dataclass
class Report:
    transaction_uid: str
    committed: list[tuple[str, str]] = field(default_factory=list)  # (class, instance)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # (class, instance, why)

    @property
    def event_type(self) -> int:
        return SOME_FAILED if self.failed else ALL_COMMITTED

    def dataset(self, retrieve_ae: str) -> Dataset:
        ds = Dataset()
        ds.TransactionUID = self.transaction_uid
        if self.committed:
            ds.RetrieveAETitle = retrieve_ae
            ds.ReferencedSOPSequence = [_reference(c, i) for c, i in self.committed]
        if self.failed:
            ds.FailedSOPSequence = [_reference(c, i, why) for c, i, why in self.failed]
        return ds

    def to_payload(self) -> dict[str, object]:
        return {
            "transaction_uid": self.transaction_uid,
            "committed": self.committed,
            "failed": self.failed,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, object]) -> Report:
        return cls(
            str(payload["transaction_uid"]),
            [tuple(x) for x in payload["committed"]],  # type: ignore[attr-defined,misc]
            [tuple(x) for x in payload["failed"]],  # type: ignore[attr-defined,misc]
        )


def _reference(sop_class: str, sop_instance: str, why: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if why is not None:
        item.FailureReason = why
    return item


def references(ds: Dataset) -> list[tuple[str, str]]:
    """The (class, instance) pairs of a request's or report's Referenced SOP Sequence."""
    return [
        (str(item.get("ReferencedSOPClassUID", "")), str(item.get("ReferencedSOPInstanceUID", "")))
        for item in ds.get("ReferencedSOPSequence", [])
    ]


def check(box: Box, transaction_uid: str, wanted: list[tuple[str, str]]) -> Report:
    """Commit what the box holds safely (stored, fsynced, indexed); fail the rest."""
    report = Report(transaction_uid)
    i = schema.instances
    held: dict[str, str] = {}
    uids = [uid for _, uid in wanted]
    with box.index.engine.connect() as conn:
        for start in range(0, len(uids), 500):
            rows = conn.execute(
                select(i.c.sop_instance_uid, i.c.sop_class_uid).where(
                    i.c.sop_instance_uid.in_(uids[start : start + 500]), i.c.copy == 0
                )
            ).all()
            held.update({r.sop_instance_uid: r.sop_class_uid for r in rows})
    for sop_class, uid in wanted:
        if uid not in held:
            report.failed.append((sop_class, uid, NO_SUCH_INSTANCE))
        elif held[uid] != sop_class:
            report.failed.append((sop_class, uid, CLASS_INSTANCE_CONFLICT))
        else:
            report.committed.append((sop_class, uid))
    return report
