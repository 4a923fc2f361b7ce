"""Duplicate policies, and what survives a restart or a power cut."""

from __future__ import annotations

import sqlite3

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicombox.core.index.engine import close_engine, open_engine, sqlite_url
from dicombox.core.jobs import JobQueue
from dicombox.core.net import pdu
from tests.support import rawclient
from tests.test_bad_input import encoded, small_ct


def store(box, ds: pydicom.Dataset) -> int:
    sock, answer = rawclient.associate(box.port, CTImageStorage, ExplicitVRLittleEndian)
    assert answer == pdu.A_ASSOCIATE_AC
    status = rawclient.c_store(sock, CTImageStorage, str(ds.SOPInstanceUID), encoded(ds))
    rawclient.release(sock)
    return status


def rows(box, sql: str) -> list[tuple]:
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        return db.execute(sql).fetchall()


def two_versions() -> tuple[pydicom.Dataset, pydicom.Dataset]:
    first = small_ct()
    second = small_ct(
        StudyInstanceUID=first.StudyInstanceUID,
        SeriesInstanceUID=first.SeriesInstanceUID,
        SOPInstanceUID=first.SOPInstanceUID,
        StudyDescription="second",
    )
    return first, second


@pytest.mark.parametrize(
    ("policy", "second_status", "kept_description", "copies"),
    [
        ("keep-first", 0x0000, "synthetic", 1),
        ("reject", 0x0111, "synthetic", 1),
        ("replace", 0x0000, "second", 1),
        ("keep-both", 0x0000, None, 2),
    ],
)
def test_duplicate_policy(make_box, policy, second_status, kept_description, copies):
    box = make_box(f'[storage]\nduplicates = "{policy}"\n')
    first, second = two_versions()
    assert store(box, first) == 0x0000
    assert store(box, second) == second_status
    files = sorted((box.data_dir / "studies").rglob("*.dcm"))
    assert len(files) == copies
    assert len(rows(box, "select id from instances")) == copies
    if kept_description:
        assert pydicom.dcmread(files[0]).StudyDescription == kept_description
    else:
        assert {pydicom.dcmread(f).StudyDescription for f in files} == {"synthetic", "second"}


def test_restart_keeps_index_and_queue(make_box):
    box = make_box()
    ds = small_ct()
    assert store(box, ds) == 0
    engine = open_engine(sqlite_url(box.data_dir.resolve()))
    job = JobQueue(engine).enqueue("nobody-runs-this", {"study": str(ds.StudyInstanceUID)})
    close_engine(engine)
    box.kill()  # every process at once, no clean shutdown
    box.start()
    assert rows(box, "select sop_instance_uid from instances") == [(str(ds.SOPInstanceUID),)]
    assert rows(box, f"select kind, state from jobs where id = {job}") == [
        ("nobody-runs-this", "queued")
    ]
    assert store(box, small_ct()) == 0  # and it still takes more


def test_unclean_stop_reindexes_files_the_index_lost(make_box):
    box = make_box()
    kept = [small_ct() for _ in range(3)]
    for ds in kept:
        assert store(box, ds) == 0
    box.kill()
    # What a power cut can do to an index that commits without waiting for the disk:
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        db.execute("delete from instances")
    (box.data_dir / "studies" / "stray.dcm").write_bytes(b"not dicom at all")
    box.start()
    uids = {r[0] for r in rows(box, "select sop_instance_uid from instances")}
    assert uids == {str(ds.SOPInstanceUID) for ds in kept}
    assert (box.data_dir / "quarantine" / "studies" / "stray.dcm").exists()
    assert "re-indexed" in box.output()


def test_reindex_cli_refuses_while_running(box):
    out = box.cli("reindex")
    assert out.returncode == 1 and "stop the box first" in out.stdout


def test_clean_stop_finishes_and_marks_clean(box):
    assert store(box, small_ct()) == 0
    assert box.stop() == 0
    assert (box.data_dir / "run" / "clean-shutdown").exists()
    assert not (box.data_dir / "run" / "ready.json").exists()
    assert "stopped" in box.output()


def test_unknown_uid_characters_never_reach_a_path(box):
    ds = small_ct(StudyInstanceUID="../../etc/evil", SeriesInstanceUID=generate_uid())
    assert store(box, ds) == 0
    (path,) = (box.data_dir / "studies").rglob("*.dcm")
    assert ".." not in path.relative_to(box.data_dir).as_posix()
    assert path.parent.parent.name.startswith("x")


def test_a_file_removed_by_hand_is_restored_by_the_next_send(box):
    ds = small_ct()
    assert store(box, ds) == 0
    (path,) = (box.data_dir / "studies").rglob("*.dcm")
    path.unlink()
    assert store(box, ds) == 0
    assert pydicom.dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
    assert len(rows(box, "select id from instances")) == 1
