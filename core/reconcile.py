"""Bringing the index back in line with the store after an unclean stop.

The store is the truth: every acknowledged instance is an fsynced file. The index
commits without waiting for the disk, so a power cut may lose its last rows; at the next
start (and on ``dicombox reindex``) every stored file the index does not know is read and
indexed again. A file that is not a whole data set is moved to ``quarantine/``, never
deleted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from dicombox.core.box import Box
from dicombox.core.header import read_stored_header, value_of
from dicombox.core.index.study_index import StoredInstance
from dicombox.core.store import copy_number

log = logging.getLogger("dicombox.reconcile")
CLEAN_MARK = "clean-shutdown"


@dataclass
class ReconcileReport:
    scanned: int = 0
    indexed: int = 0
    quarantined: int = 0
    # Whole files the index could not take (full volume, index down): left where they
    # are for the next check, never quarantined for the index's fault.
    unindexed: int = 0


def reconcile(box: Box) -> ReconcileReport:
    report = ReconcileReport()
    known = box.index.known_paths()
    root = box.store.root
    for path in sorted(box.store.studies.rglob("*.dcm")):
        report.scanned += 1
        relpath = path.relative_to(root).as_posix()
        if relpath in known:
            continue
        try:
            ds = read_stored_header(path, box.index.header_tags)
            copy = copy_number(path)
        except OSError as exc:  # the disk's fault, not the file's: try again next time
            log.error("cannot read %s: %s; it is checked again at the next start", relpath, exc)
            report.unindexed += 1
            continue
        except Exception as exc:  # not a whole data set: not an instance we can serve
            _quarantine(root, relpath, exc, report)
            continue
        try:
            stored = box.index.add_instance(
                ds,
                path=relpath,
                size=path.stat().st_size,
                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                calling_ae=str(ds.file_meta.get("SourceApplicationEntityTitle", "")).strip(),
                copy=copy,
            )
        except IntegrityError as exc:  # its instance is indexed as another file: a stray
            _quarantine(root, relpath, exc, report)
            continue
        except Exception as exc:  # the index's fault (full volume, index down): keep it
            log.error("cannot index %s: %s; it is checked again at the next start", relpath, exc)
            report.unindexed += 1
            continue
        report.indexed += 1
        # A stop between the file's fsync and its index row also cut off the routes
        # (forward, burn, print): run them now, as ingest would have. The sender got no
        # answer and sends it again, but to the store that is a duplicate and routes
        # nothing.
        try:
            box.hook.dicombox_on_stored(box=box, instance=stored, dataset=ds)
        except Exception:
            log.exception("the routes of re-indexed %s failed", relpath)
    return report


def _quarantine(root: Path, relpath: str, why: Exception, report: ReconcileReport) -> None:
    """Move a stored file that is not a whole data set to ``quarantine/``, kept."""
    target = root / "quarantine" / relpath
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / relpath, target)
    except OSError as exc:
        log.error("cannot move %s to quarantine (%s): it stays", relpath, exc)
        report.unindexed += 1
        return
    log.warning("moved %s to quarantine: %s", relpath, why)
    report.quarantined += 1


def finish_interrupted_routes(box: Box, prefix: str = "") -> int:
    """Run the routes (forward, burn, print, priors) of instances a crash caught between
    their index row and their routes' jobs; returns how many.

    A placed instance keeps its temporary name under ``tmp/`` as a second link until its
    routes are queued (``InstanceStore.settle``), so such a name still linked elsewhere
    is an instance whose routes may not have run. If the index has its row, its routes
    run now: a job still queued gathers the instance in once, and where the crash fell
    after some of its routes were queued, a receiver may get the instance twice, which a
    DICOM receiver takes as a duplicate. If it has no row, ``reconcile`` indexes it and
    runs its routes as for any file the index does not know. Call this before
    ``reconcile``; with ``prefix`` (a dead worker's pid and a dash), only for what that
    worker left."""
    count = 0
    for name in box.store.interrupted(prefix):
        try:
            inode = name.stat().st_ino
            ds = read_stored_header(name, box.index.header_tags)
            uid = value_of(ds, "SOPInstanceUID")
            rows = box.index.instance_rows(sop_instance_uid=uid)
            if not rows:
                log.warning("%s was placed but not indexed: reconcile takes it", uid)
            for row in rows:
                placed = box.store.path(row["path"])
                if placed.exists() and placed.stat().st_ino == inode:
                    instance = StoredInstance(
                        uid,
                        row["sop_class_uid"],
                        value_of(ds, "StudyInstanceUID"),
                        value_of(ds, "SeriesInstanceUID"),
                        row["path"],
                        row["copy"],
                        row["calling_ae"],
                    )
                    box.hook.dicombox_on_stored(box=box, instance=instance, dataset=ds)
                    log.warning("routes of %s run again after an unclean stop", row["path"])
                    count += 1
        except Exception:
            log.exception("the routes of %s could not be run again", name.name)
        name.unlink(missing_ok=True)
    return count


def was_clean(run_dir: Path) -> bool:
    return (run_dir / CLEAN_MARK).exists()


def mark_running(run_dir: Path) -> None:
    (run_dir / CLEAN_MARK).unlink(missing_ok=True)


def mark_clean(run_dir: Path) -> None:
    (run_dir / CLEAN_MARK).write_text("")
