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
from typing import Any

from sqlalchemy.exc import IntegrityError

from dicombox.core.box import Box
from dicombox.core.header import read_stored_header, value_of
from dicombox.core.index.study_index import StoredInstance
from dicombox.core.outbox import route_jobs
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
        calling_ae = str(ds.file_meta.get("SourceApplicationEntityTitle", "")).strip()
        try:
            # A stop between the file's fsync and its index row also cut off its routes
            # (forward, burn, print): they go in with the row, as ingest would have
            # written them. An instance the index has kept its routes with its row, so
            # nothing is queued twice. (The sender got no answer and sends it again,
            # but to the store that is a duplicate and routes nothing.)
            outbox = route_jobs(box, _placed(ds, relpath, copy, calling_ae), ds)
        except Exception as exc:  # a plugin's fault, not the file's: try again next time
            log.error("cannot work out the routes of %s: %s; it is checked again at the "
                      "next start", relpath, exc)  # fmt: skip
            report.unindexed += 1
            continue
        try:
            box.index.add_instance(
                ds,
                path=relpath,
                size=path.stat().st_size,
                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                calling_ae=calling_ae,
                copy=copy,
                outbox=outbox,
            )
        except IntegrityError as exc:  # its instance is indexed as another file: a stray
            _quarantine(root, relpath, exc, report)
            continue
        except Exception as exc:  # the index's fault (full volume, index down): keep it
            log.error("cannot index %s: %s; it is checked again at the next start", relpath, exc)
            report.unindexed += 1
            continue
        report.indexed += 1
    return report


def _placed(ds: Any, relpath: str, copy: int, calling_ae: str) -> StoredInstance:
    return StoredInstance(
        value_of(ds, "SOPInstanceUID"),
        value_of(ds, "SOPClassUID"),
        value_of(ds, "StudyInstanceUID"),
        value_of(ds, "SeriesInstanceUID"),
        relpath,
        copy,
        calling_ae,
    )


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


def was_clean(run_dir: Path) -> bool:
    return (run_dir / CLEAN_MARK).exists()


def mark_running(run_dir: Path) -> None:
    (run_dir / CLEAN_MARK).unlink(missing_ok=True)


def mark_clean(run_dir: Path) -> None:
    (run_dir / CLEAN_MARK).write_text("")
