"""Forwarding with the enhanced → single-frame split (seed 002): for a remote with
``split_enhanced``, each enhanced multi-frame instance goes out as its frames, written
to a scratch folder of the store for the time of the delivery. The original counts as
delivered when every frame was; the frames are derived data and never indexed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from dicombox.core.box import Box
from dicombox.core.config import RemoteSection
from dicombox.core.net.delivery import DeliveryReport
from dicombox.core.net.sending import StoredFile
from dicombox.plugins.storage.split import SINGLE_FRAME_CLASS, SplitError, split_frames


@contextmanager
def frames_instead(
    box: Box, remote: RemoteSection, items: list[StoredFile]
) -> Iterator[tuple[list[StoredFile], dict[str, StoredFile]]]:
    """``items`` with each enhanced instance replaced by its frames, and for each frame
    the instance it came from. An instance that cannot be split goes as it is."""
    to_split = [
        i
        for i in items
        if remote.split_enhanced
        and i.sop_class_uid in SINGLE_FRAME_CLASS
        and i.sop_class_uid not in remote.sop_classes
    ]
    if not to_split:
        yield items, {}
        return
    folder = box.store.scratch()
    sent: list[StoredFile] = []
    origin: dict[str, StoredFile] = {}
    try:
        for item in items:
            if item not in to_split:
                sent.append(item)
                continue
            try:
                frames = list(_write_frames(item, folder))
            except SplitError:
                sent.append(item)  # the remote then refuses it, with the reason logged
                continue
            for frame in frames:
                origin[frame.sop_instance_uid] = item
            sent += frames
        yield sent, origin
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_frames(item: StoredFile, folder: Path) -> Iterator[StoredFile]:
    for frame in split_frames(item.path):
        path = folder / f"{frame.SOPInstanceUID}.dcm"
        frame.save_as(path, enforce_file_format=True)
        yield StoredFile(
            path, str(frame.SOPClassUID), str(frame.SOPInstanceUID), ExplicitVRLittleEndian
        )


def per_original(report: DeliveryReport, origin: dict[str, StoredFile]) -> DeliveryReport:
    """The report in terms of stored instances: frames folded into their original."""
    if not origin:
        return report
    merged = DeliveryReport(warnings=report.warnings)
    failed: dict[str, tuple[StoredFile, str, bool]] = {}
    for frame, why in report.refused:
        original = origin.get(frame.sop_instance_uid, frame)
        failed.setdefault(original.sop_instance_uid, (original, why, False))
    for frame, why in report.deferred:
        original = origin.get(frame.sop_instance_uid, frame)
        failed.setdefault(original.sop_instance_uid, (original, why, True))
    frames_of: dict[str, int] = {}
    for original in origin.values():
        frames_of[original.sop_instance_uid] = frames_of.get(original.sop_instance_uid, 0) + 1
    taken: dict[str, int] = {}
    for frame in report.delivered:
        original = origin.get(frame.sop_instance_uid)
        if original is None:
            merged.delivered.append(frame)  # not split: itself
            continue
        uid = original.sop_instance_uid
        taken[uid] = taken.get(uid, 0) + 1
        if taken[uid] == frames_of[uid] and uid not in failed:
            merged.delivered.append(original)  # every frame arrived
    for original, why, later in failed.values():
        (merged.deferred if later else merged.refused).append((original, why))
    return merged
