"""The small pieces the hot path rests on: command codec, completeness walk, job queue."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicombox.core.events import EventBus
from dicombox.core.header import (
    HEAD_BYTES,
    Truncated,
    Unreadable,
    check_complete,
    dataset_offset,
    read_stored_header,
    scan_header,
)
from dicombox.core.hookspecs import hookimpl
from dicombox.core.index.attributes import INDEXED_TAGS
from dicombox.core.index.engine import open_engine, sqlite_url
from dicombox.core.jobs import (
    FAILED,
    QUEUED,
    JobQueue,
    JobRunner,
    PermanentJobError,
    TransientJobError,
)
from dicombox.core.net import commands
from dicombox.core.store import file_meta


def test_command_round_trip_matches_pydicom():
    raw = commands.encode_command(
        CommandField=commands.C_STORE_RQ,
        MessageID=7,
        Priority=0,
        CommandDataSetType=0,
        AffectedSOPClassUID="1.2.840.10008.5.1.4.1.1.2",
        AffectedSOPInstanceUID="1.2.3.4",
    )
    ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    assert ds.CommandField == 1 and ds.MessageID == 7 and ds.CommandGroupLength == len(raw) - 12
    assert ds.AffectedSOPInstanceUID == "1.2.3.4"
    decoded = commands.decode_command(raw)
    assert (decoded.field, decoded.MessageID, decoded.has_dataset) == (1, 7, True)


def test_command_errors():
    with pytest.raises(commands.CommandError):
        commands.decode_command(struct.pack("<HHI", 0, 0x100, 40) + b"\x01\x00")
    with pytest.raises(commands.CommandError):
        commands.decode_command(commands.encode_command(MessageID=1))  # no command field


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "JPEG2000.dcm",
        "rtplan.dcm",
        "reportsi.dcm",
    ],
)
def test_completeness_walk_accepts_whole_and_rejects_cut(name, tmp_path: Path):
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    ds.save_as(tmp_path / "whole.dcm", enforce_file_format=True)
    whole = read_stored_header(tmp_path / "whole.dcm", INDEXED_TAGS)
    assert whole.SOPInstanceUID == ds.SOPInstanceUID and whole.PatientName == ds.PatientName
    assert "PixelData" not in whole
    raw = (tmp_path / "whole.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[: len(raw) - 7])
    with pytest.raises(Truncated):
        read_stored_header(tmp_path / "cut.dcm", INDEXED_TAGS)
    # The walk over the head kept in memory while receiving says the same as the file.
    offset, syntax = dataset_offset(tmp_path / "whole.dcm"), ds.file_meta.TransferSyntaxUID
    for head in (raw, raw[:HEAD_BYTES], raw[: offset + 40]):
        from_memory = scan_header(
            tmp_path / "whole.dcm", offset, len(raw), syntax, INDEXED_TAGS, head
        )
        assert sorted(from_memory.keys()) == sorted(whole.keys())
        assert from_memory.SOPInstanceUID == whole.SOPInstanceUID
        cut = raw[: len(raw) - 7]
        with pytest.raises(Truncated):
            scan_header(
                tmp_path / "cut.dcm", offset, len(cut), syntax, INDEXED_TAGS, head[: len(cut)]
            )


def test_a_binary_number_of_the_wrong_length_is_refused_as_data(tmp_path: Path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    raw = bytearray((tmp_path / "x.dcm").read_bytes())
    rows = raw.index(struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 2))
    # Rows (US) given a third byte: the walk goes on, but no US value is 3 bytes long.
    raw[rows + 6 : rows + 8] = struct.pack("<H", 3)
    raw[rows + 10 : rows + 10] = b"\x00"
    (tmp_path / "x.dcm").write_bytes(bytes(raw))
    with pytest.raises(Unreadable):
        read_stored_header(tmp_path / "x.dcm", INDEXED_TAGS)


def test_completeness_of_undefined_length_items():
    # An SQ of undefined length with one undefined-length item, implicit VR.
    item = struct.pack("<HHI", 0x0008, 0x0100, 2) + b"AB"
    body = (
        struct.pack("<HHI", 0x0008, 0x1140, 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    check_complete(io.BytesIO(body), 0, len(body), explicit=False, little=True)
    with pytest.raises(Truncated):
        check_complete(io.BytesIO(body[:-8]), 0, len(body) - 8, explicit=False, little=True)


def test_file_meta_reads_back_with_pydicom():
    header = file_meta(
        "1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1", "CT01", "2.25.1", "DICOMBOX_1"
    )
    meta = pydicom.dcmread(io.BytesIO(header), force=True).file_meta
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert meta.SourceApplicationEntityTitle == "CT01"
    assert meta.MediaStorageSOPInstanceUID == "1.2.3"


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(
        __import__("dicombox.core.index.study_index", fromlist=["StudyIndex"])
        .StudyIndex(open_engine(sqlite_url(tmp_path)))
        .engine
    )


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_jobs_retry_with_backoff_then_succeed(queue: JobQueue):
    calls: list[int] = []

    def flaky(job, progress):
        calls.append(job.attempts)
        progress(f"try {job.attempts}")
        if job.attempts < 3:
            raise TransientJobError("peer down")

    job_id = queue.enqueue("flaky", {}, max_attempts=5, retry_delay_s=0.1)
    runner = JobRunner(queue, {"flaky": flaky}, EventBus(), poll_s=0.05)
    runner.start()
    try:
        wait_for(lambda: queue.get(job_id).state == "done")
    finally:
        runner.stop()
    assert calls == [1, 2, 3]
    assert queue.get(job_id).progress == "try 3"


def test_permanent_failure_is_not_retried(queue: JobQueue):
    def broken(job, progress):
        raise PermanentJobError("unknown destination")

    job_id = queue.enqueue("broken", {}, max_attempts=5, retry_delay_s=0.01)
    runner = JobRunner(queue, {"broken": broken}, EventBus(), poll_s=0.05)
    runner.start()
    try:
        wait_for(lambda: queue.get(job_id).state == FAILED)
    finally:
        runner.stop()
    job = queue.get(job_id)
    assert job.attempts == 1 and "unknown destination" in job.last_error
    assert queue.retry(job_id) and queue.get(job_id).state == QUEUED


def test_jobs_of_one_queue_run_one_at_a_time(queue: JobQueue):
    running, overlap = set(), []
    lock = threading.Lock()

    def slow(job, progress):
        with lock:
            if running:
                overlap.append(job.id)
            running.add(job.id)
        time.sleep(0.1)
        with lock:
            running.discard(job.id)

    ids = [queue.enqueue("slow", {}, queue="printer-1") for _ in range(4)]
    runner = JobRunner(queue, {"slow": slow}, EventBus(), threads=3, poll_s=0.02)
    runner.start()
    try:
        wait_for(lambda: all(queue.get(i).state == "done" for i in ids))
    finally:
        runner.stop()
    assert overlap == []


def test_due_jobs_of_a_busy_queue_do_not_hide_those_of_another(queue: JobQueue):
    for _ in range(60):  # more than one claim looks at
        queue.enqueue("forward", {}, queue="remote:pacs")
    burn = queue.enqueue("burn", {}, queue="burner")
    job = queue.claim({"forward", "burn"}, {"remote:pacs"})
    assert job is not None and job.id == burn


def test_the_job_runner_outlives_a_failing_job_queue(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
):
    """A full volume makes the queue's own writes fail: the runner threads log it and
    carry on, and run the jobs once the queue works again."""
    import sqlite3

    done: list[int] = []
    job_id = queue.enqueue("work", {})
    failures = iter(range(3))
    real_claim = queue.claim

    def failing_claim(*args: Any) -> Any:
        if next(failures, None) is not None:
            raise sqlite3.OperationalError("database or disk is full")
        return real_claim(*args)

    monkeypatch.setattr(queue, "claim", failing_claim)
    runner = JobRunner(queue, {"work": lambda job, _: done.append(job.id)}, EventBus(),
                       threads=1, poll_s=0.02)  # fmt: skip
    runner.start()
    try:
        wait_for(lambda: queue.get(job_id).state == "done")
    finally:
        runner.stop()
    assert done == [job_id]


def test_interrupted_jobs_are_requeued(queue: JobQueue):
    job_id = queue.enqueue("x", {})
    assert queue.claim({"x"}, set()).id == job_id
    assert queue.get(job_id).state == "running"
    assert queue.recover_interrupted() == 1
    assert queue.get(job_id).state == QUEUED


def test_a_try_cut_short_by_the_box_does_not_count(queue: JobQueue):
    # Three kills in one forward used to take a job to 4/3 tries, and the next failure
    # that may pass then failed it for good.
    job_id = queue.enqueue("x", {}, max_attempts=3)
    for _ in range(3):
        assert queue.claim({"x"}, set()).attempts == 1
        assert queue.recover_interrupted() == 1
    assert queue.get(job_id).attempts == 0
    job = queue.claim({"x"}, set())
    assert queue.failed(job, "peer down", permanent=False) == QUEUED


def test_a_job_without_a_limit_is_retried_with_a_capped_backoff(queue: JobQueue):
    job_id = queue.enqueue("x", {}, max_attempts=0, retry_delay_s=1.0)
    for n in range(1, 6):
        job = queue.claim({"x"}, set())
        assert job is not None and job.attempts == n
        before = time.time()
        assert queue.failed(job, "cannot reach pacs", False, max_delay_s=10) == QUEUED
        assert before + min(2 ** (n - 1), 10) <= queue.get(job_id).next_run_at
        queue._set(job_id, next_run_at=0)  # due again at once, for the test
    queue._set(job_id, attempts=5000)  # weeks of an archive gone: the delay stays the cap
    job = queue.claim({"x"}, set())
    before = time.time()
    assert queue.failed(job, "cannot reach pacs", False, max_delay_s=600) == QUEUED
    after = queue.get(job_id)
    assert after.state == QUEUED and after.last_error == "cannot reach pacs"
    assert before + 600 <= after.next_run_at <= time.time() + 600
    job = queue.get(job_id)
    assert queue.failed(job, "rejects the SOP class", permanent=True) == FAILED


@pytest.mark.parametrize(
    "name",
    [
        "chrH31.dcm",
        "chrFren.dcm",
        "chrGreek.dcm",
        "chrArab.dcm",
        "chrX1.dcm",
        "chrJapMulti.dcm",
    ],
)
def test_header_scan_decodes_character_sets_like_pydicom(name, tmp_path: Path):
    from pydicom.data import get_charset_files

    (source,) = get_charset_files(name)
    ds = pydicom.dcmread(source)
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    scanned = read_stored_header(tmp_path / "x.dcm", INDEXED_TAGS)
    assert str(scanned.PatientName) == str(ds.PatientName)


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 27 8:17 / /var/lib/dicombox rw,relatime shared:1 - xfs /dev/sdb1 rw
31 30 8:18 / /var/lib/dicombox/studies\\040old rw,relatime - ext4 /dev/sdb2 rw
32 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(
    ("path", "mount"),
    [
        ("/var/lib/dicombox/studies", ("xfs", "8:17")),
        ("/var/lib/dicombox/studies old/1.2", ("ext4", "8:18")),
        ("/var/lib/dicombox2", ("ext4", "254:0")),
        ("/dev/shm/x", ("tmpfs", "0:27")),
    ],
)
def test_the_mount_under_a_path_is_the_deepest_that_holds_it(path: str, mount: tuple):
    from dicombox.core.filesystems import mount_of

    assert mount_of(Path(path), MOUNTINFO) == mount


def test_a_new_names_directory_is_flushed_where_the_file_system_does_not_promise(tmp_path):
    from dicombox.core.filesystems import file_fsync_makes_its_name_durable
    from dicombox.core.store import InstanceStore

    # tmpfs and proc have no journal: the directory is flushed as POSIX asks.
    assert not file_fsync_makes_its_name_durable(Path("/dev/shm"))
    assert not file_fsync_makes_its_name_durable(Path("/proc/self"))
    assert InstanceStore(tmp_path, 0, "always").flush_directories
    assert InstanceStore(tmp_path, 0, "auto").flush_directories == (
        not file_fsync_makes_its_name_durable(tmp_path)
    )


def test_a_received_file_goes_to_writeback_as_it_arrives_and_reads_back_whole(tmp_path):
    import sys

    from dicombox.core.filesystems import writeback_available
    from dicombox.core.store import WRITEBACK_STEP, InstanceStore

    store = InstanceStore(tmp_path, 0)
    body = bytes(range(256)) * (5 * WRITEBACK_STEP // 256 + 7)
    incoming = store.begin(b"HEADER")
    for start in range(0, len(body), 100_000):
        incoming.write(body[start : start + 100_000])
    incoming.close()
    assert incoming._writing_back == len(body) + 6  # all of it handed to writeback
    incoming.sync()
    assert incoming.path.read_bytes() == b"HEADER" + body
    assert writeback_available() == sys.platform.startswith("linux")


def test_a_worker_never_waits_on_a_supervisor_that_is_slow_to_read_events(tmp_path):
    import socket

    from dicombox.core.events import Event, EventChannelClient

    path = tmp_path / "events.sock"
    supervisor = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    supervisor.bind(str(path))
    client = EventChannelClient(path)

    def publish() -> None:
        for n in range(200):  # far more than the socket's queue of datagrams holds
            client(Event("instance.stored", {"n": n}))

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    publisher.join(10)
    assert not publisher.is_alive()  # it did not wait for the reader, who has read nothing
    supervisor.settimeout(5)
    received = [Event.from_json(supervisor.recv(65536).decode()).fields["n"] for _ in range(200)]
    assert received == list(range(200))  # all of them, in order, once the reader reads
    client.close()
    supervisor.close()


def test_a_copy_that_replaces_another_has_its_folder_flushed_on_any_file_system(
    tmp_path, monkeypatch
):
    from dicombox.core import store as store_module

    flushed: list[Path] = []
    monkeypatch.setattr(store_module, "_fsync_dir", flushed.append)
    instances = store_module.InstanceStore(tmp_path, 0)
    instances.flush_directories = False  # as on ext4 with its journal: a link needs none

    def place(content: bytes) -> str | None:
        incoming = instances.begin(b"META")
        incoming.write(content)
        incoming.close()
        temporary = incoming.path
        relpath = instances.place(incoming, "1.2", "1.2.3", "1.2.3.4", lambda: 0)
        assert not temporary.exists()  # durable under its own name: the temporary one goes
        instances.settle(incoming)  # what ingest does once the index has its row
        return relpath

    relpath = place(b"first")
    assert relpath
    folder = (tmp_path / relpath).parent
    assert folder not in flushed  # the new name went with the file's own flush
    flushed.clear()  # (the folders made for it were flushed into their parents)
    assert place(b"second") == relpath  # a replacement is a rename: the folder is flushed
    assert flushed == [folder]
    assert (tmp_path / relpath).read_bytes() == b"METAsecond"
    assert list(instances.tmp.iterdir()) == []


def test_an_event_the_channel_cannot_encode_costs_that_event_only(tmp_path):
    import socket

    from dicombox.core.events import Event, EventChannelClient

    path = tmp_path / "events.sock"
    supervisor = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    supervisor.bind(str(path))
    supervisor.settimeout(5)
    client = EventChannelClient(path)
    client(Event("odd", {"values": {1, 2}}))  # a set: JSON has none
    client(Event("instance.stored", {"n": 1}))
    assert Event.from_json(supervisor.recv(65536).decode()).topic == "instance.stored"
    client.close()
    supervisor.close()


def test_a_coerced_copy_that_finds_the_volume_full_is_refused_and_nothing_is_kept(
    tmp_path, monkeypatch
):
    from dicombox.core.coercion import Coercion
    from dicombox.core.hookspecs import hookimpl
    from dicombox.core.ingest import OUT_OF_RESOURCES
    from dicombox.core.store import IncomingFile

    class CorrectPatientID:
        @hookimpl
        def dicombox_coerce(self, box, dataset, context):
            return Coercion({"PatientID": "FROM-WORKLIST"}, "worklist item W1")

    rewrite = IncomingFile.replace_content

    def rewrite_on_a_full_volume(self, header_length, content):
        rewrite(self, header_length, content)
        self.full = True  # what a write that meets ENOSPC leaves: flagged, truncated
        self._truncate()

    monkeypatch.setattr(IncomingFile, "replace_content", rewrite_on_a_full_volume)
    with box_in_this_process(tmp_path, CorrectPatientID()) as box:
        outcome, ds = ingest_ct_small(box)
        assert outcome.status == OUT_OF_RESOURCES
        assert list(box.store.studies.rglob("*.dcm")) == []  # no empty file took a name
        assert list(box.store.tmp.iterdir()) == []
        assert box.index.instance_rows(sop_instance_uid=ds.SOPInstanceUID) == []


def test_a_coercion_that_fails_after_rewriting_the_file_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewritten file cannot be re-read: it holds neither what arrived nor a whole
    coerced copy, so it is not stored "as received" (0110), and nothing is left."""
    from dicombox.core.coercion import Coercion
    from dicombox.core.hookspecs import hookimpl
    from dicombox.core.ingest import PROCESSING_FAILURE
    from dicombox.core.store import IncomingFile

    class CorrectPatientID:
        @hookimpl
        def dicombox_coerce(self, box: Any, dataset: Any, context: Any) -> Coercion:
            return Coercion({"PatientID": "FROM-WORKLIST"}, "worklist item W1")

    rewrite = IncomingFile.replace_content

    def rewrite_cut_short(self: IncomingFile, header_length: int, content: bytes) -> None:
        rewrite(self, header_length, content[: len(content) // 2])  # an I/O error midway

    monkeypatch.setattr(IncomingFile, "replace_content", rewrite_cut_short)
    with box_in_this_process(tmp_path, CorrectPatientID()) as box:
        outcome, ds = ingest_ct_small(box)
        assert outcome.status == PROCESSING_FAILURE, outcome
        assert list(box.store.studies.rglob("*.dcm")) == []
        assert list(box.store.tmp.iterdir()) == []
        assert box.index.instance_rows(sop_instance_uid=ds.SOPInstanceUID) == []


@contextmanager
def box_in_this_process(tmp_path: Path, *plugins: object) -> Iterator[Any]:
    """A box on default configuration (and ``plugins``) opened here, closed after."""
    from dicombox.core.box import load_plugins_and_config, open_box

    config, pm, infos = load_plugins_and_config(None, data_dir=tmp_path / "var")
    for plugin in plugins:
        pm.register(plugin)
    box = open_box(config, pm, infos)
    try:
        yield box
    finally:
        box.close()


def ingest_ct_small(box: Any, ingest: Any = None) -> tuple[Any, pydicom.Dataset]:
    """pydicom's CT_small.dcm taken in as a C-STORE from CT01 would be (by ``ingest``, or
    an Ingest of the box's configuration): its outcome."""
    from dicombox.core.ingest import Arrival, Ingest

    source = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(source)
    arrival = Arrival(
        str(ds.file_meta.TransferSyntaxUID), "CT01", ds.SOPClassUID, ds.SOPInstanceUID
    )
    ingest = ingest or Ingest(box)
    sink = ingest.open(arrival)
    sink.write(source.read_bytes()[dataset_offset(source) :])
    sink.close()
    return ingest.finish(sink, arrival), ds


def test_temporary_files_are_made_ahead_and_those_left_unused_go_at_close(tmp_path):
    from dicombox.core.tempfiles import SPARES, TemporaryFiles

    descriptors = len(os.listdir("/proc/self/fd"))
    files = TemporaryFiles(tmp_path)
    made = files.take()  # none made ahead yet: made there and then
    files.prepare()
    deadline = time.monotonic() + 10
    while len(list(tmp_path.iterdir())) < 1 + SPARES and time.monotonic() < deadline:
        time.sleep(0.01)
    ahead = sorted(set(tmp_path.iterdir()) - {made[0]})
    assert len(ahead) == SPARES and all(p.stat().st_size == 0 for p in ahead)
    path, fd = files.take()  # one made ahead, open for writing
    assert path in ahead
    os.write(fd, b"DATA")
    os.close(fd)
    os.close(made[1])
    files.close()
    assert sorted(tmp_path.iterdir()) == sorted([made[0], path])  # the unused one is gone
    files.prepare()  # after close, nothing more is made ahead
    time.sleep(0.1)
    assert sorted(tmp_path.iterdir()) == sorted([made[0], path])
    assert path.read_bytes() == b"DATA"
    assert len(os.listdir("/proc/self/fd")) == descriptors  # the unused one's closed too

    never_prepared = TemporaryFiles(tmp_path / "other")
    (tmp_path / "other").mkdir()
    never_prepared.close()
    never_prepared.prepare()  # closed before it ever made any: still makes none
    time.sleep(0.1)
    assert list((tmp_path / "other").iterdir()) == []


def test_a_temporary_file_that_cannot_be_made_gives_a700_and_the_data_set_is_drained(
    tmp_path, monkeypatch
):
    import errno

    from dicombox.core.ingest import OUT_OF_RESOURCES
    from dicombox.core.tempfiles import TemporaryFiles

    def no_inode_left(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TemporaryFiles, "_make", no_inode_left)
    with box_in_this_process(tmp_path) as box:
        outcome, _ = ingest_ct_small(box)  # its data set is drained, not kept
        assert outcome.status == OUT_OF_RESOURCES
        assert "cannot create a temporary file" in outcome.comment
        assert list(box.store.tmp.iterdir()) == []


def test_a_dead_workers_sweep_counts_the_data_sets_it_cut_off_not_the_files_made_ahead(
    tmp_path,
):
    from dicombox.core.store import InstanceStore
    from dicombox.core.tempfiles import SPARES

    store = InstanceStore(tmp_path, 0)
    begun = store.begin(b"META")  # a data set the death cut off
    begun.write(b"part of it")
    store.prepare()
    deadline = time.monotonic() + 10
    while len(list(store.tmp.iterdir())) < 1 + SPARES and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list(store.tmp.iterdir())) == 1 + SPARES
    assert store.sweep_temporary(f"{os.getpid()}-") == 1
    assert list(store.tmp.iterdir()) == []
    begun.discard()
    store.close()


def test_reconcile_keeps_a_whole_file_the_index_cannot_take_and_indexes_it_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full volume or an index that is down at the check after an unclean stop is the
    index's fault: the file stays in place, unquarantined, for the next check."""
    import sqlite3

    from sqlalchemy import text

    from dicombox.core.reconcile import reconcile

    with box_in_this_process(tmp_path) as box:
        outcome, ds = ingest_ct_small(box)
        assert outcome.status == 0
        stored = box.store.path(outcome.extra["path"])
        with box.index.engine.begin() as conn:  # what a power cut may do to the last rows
            conn.execute(text("delete from instances"))

        def index_full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        with monkeypatch.context() as patched:
            patched.setattr(box.index, "add_instance", index_full)
            report = reconcile(box)
        assert (report.indexed, report.quarantined, report.unindexed) == (0, 0, 1)
        assert stored.exists() and not (box.store.root / "quarantine").exists()
        report = reconcile(box)  # the index is back
        assert (report.indexed, report.quarantined, report.unindexed) == (1, 0, 0)
        assert [r["path"] for r in box.index.instance_rows(sop_instance_uid=ds.SOPInstanceUID)] == [
            outcome.extra["path"]
        ]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_name_that_cannot_be_made_is_a700_and_leaves_no_file_nor_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The volume fills between the data and the instance's name (its folder or its
    link): A700, and the received file goes at once, not when the worker dies."""
    import errno

    from dicombox.core import store
    from tests.support.faults import tmp_leftovers

    def no_room(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with box_in_this_process(tmp_path) as box:
        box.index.copies_of("1.2.3")  # the index's own files are open from here on
        before = open_descriptors()
        with monkeypatch.context() as patched:
            patched.setattr(store.os, "link", no_room)
            outcome, _ = ingest_ct_small(box)
        assert outcome.status == 0xA700 and "full" in outcome.comment
        assert tmp_leftovers(box.store.root, [os.getpid()]) == []
        made_ahead = len(list(box.store.tmp.glob("*.part")))  # empty, each held open
        assert open_descriptors() <= before + made_ahead  # no received file held open
        assert not list(box.store.studies.rglob("*.dcm"))


def test_an_index_failing_on_a_duplicate_keeps_the_first_copy_and_drops_the_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from tests.support.faults import tmp_leftovers

    def index_down(*args: object) -> int:
        raise OperationalError("SELECT count(*) FROM instances", {}, Exception("locked"))

    with box_in_this_process(tmp_path) as box:
        first, _ = ingest_ct_small(box)
        placed = box.store.path(first.extra["path"])
        content = placed.read_bytes()
        with monkeypatch.context() as patched:
            patched.setattr(box.index, "copies_of", index_down)
            second, _ = ingest_ct_small(box)
        assert second.status == 0xA700 and "index unavailable" in second.comment
        assert placed.read_bytes() == content
        assert tmp_leftovers(box.store.root, [os.getpid()]) == []


class RouteEverything:
    """A plugin whose route asks a job of kind ``route-test`` per study for every
    instance (its items: the instance's UID), or fails when ``broken`` says how."""

    def __init__(self) -> None:
        self.broken: Exception | None = None

    @hookimpl
    def dicombox_route_jobs(self, box: Any, instance: Any, dataset: Any) -> list[Any]:
        from dicombox.core.outbox import RouteJob

        if self.broken is not None:
            raise self.broken
        uid = instance.sop_instance_uid
        return [RouteJob("route-test", instance.study_instance_uid, [uid], queue="test")]


def outbox_and_jobs(box: Any) -> tuple[list[tuple[str, dict]], list[tuple[str, list]]]:
    """(kind, payload) of each outbox row; (group, items) of each ``route-test`` job."""
    import json

    from sqlalchemy import select

    from dicombox.core.index import schema

    with box.index.engine.connect() as conn:
        rows = conn.execute(select(schema.outbox.c.kind, schema.outbox.c.payload)).all()
    jobs = [(j.payload["group"], j.payload["items"]) for j in box.jobs.list()]
    return [(r.kind, json.loads(r.payload)) for r in rows], jobs


def test_an_instance_is_indexed_with_its_route_jobs_and_the_relay_queues_them_once(
    tmp_path: Path,
) -> None:
    """The instance row and its route jobs (outbox rows) commit together; the relay
    turns the rows into one gathered job and removes them in the same transaction."""
    from dicombox.core.outbox import relay

    with box_in_this_process(tmp_path, RouteEverything()) as box:
        outcome, ds = ingest_ct_small(box)
        assert outcome.status == 0
        uid, study = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        rows, jobs = outbox_and_jobs(box)
        assert [(kind, p["group"], p["items"]) for kind, p in rows] == [
            ("route-test", study, [uid])
        ]
        assert jobs == []
        assert relay(box.index.engine) == 1
        assert outbox_and_jobs(box) == ([], [(study, [uid])])
        assert relay(box.index.engine) == 0  # taken once


def test_an_instance_whose_route_jobs_the_index_refuses_is_not_stored(tmp_path: Path) -> None:
    """The route jobs go in the instance's own transaction: if they cannot be written,
    neither is its row, and the instance is refused (A700) and its file removed, never
    answered 0000 without its routes."""
    from sqlalchemy import text

    from dicombox.core.index.engine import write_transaction

    with box_in_this_process(tmp_path, RouteEverything()) as box:
        with write_transaction(box.index.engine) as conn:  # a table the write fails on
            conn.execute(text("DROP TABLE outbox"))
        outcome, _ = ingest_ct_small(box)
        assert outcome.status == 0xA700 and "index unavailable" in outcome.comment
        assert box.index.totals()["instances"] == 0
        assert not list(box.store.studies.rglob("*.dcm"))


def test_an_instance_whose_routes_cannot_be_worked_out_is_refused(tmp_path: Path) -> None:
    """A route hook that fails refuses the instance (0110), nothing of it kept."""
    routes = RouteEverything()
    routes.broken = RuntimeError("the route's rule cannot be read")
    with box_in_this_process(tmp_path, routes) as box:
        outcome, _ = ingest_ct_small(box)
        assert outcome.status == 0x0110 and "routes" in outcome.comment
        assert box.index.totals()["instances"] == 0
        assert not list(box.store.studies.rglob("*.dcm"))
        assert outbox_and_jobs(box) == ([], [])


def test_reconcile_queues_the_routes_of_what_it_indexes_and_never_again(tmp_path: Path) -> None:
    """After a crash, reconcile indexes a file the index lost with its route jobs (the
    power cut took the row and its outbox rows together), and queues nothing for an
    instance the index has: its routes went in with its row."""
    from sqlalchemy import delete

    from dicombox.core.index import schema
    from dicombox.core.index.engine import write_transaction
    from dicombox.core.outbox import relay
    from dicombox.core.reconcile import reconcile

    with box_in_this_process(tmp_path, RouteEverything()) as box:
        outcome, ds = ingest_ct_small(box)
        uid, study = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        report = reconcile(box)  # the instance is indexed: its routes are in the outbox
        assert (report.scanned, report.indexed) == (1, 0)
        assert relay(box.index.engine) == 1
        assert outbox_and_jobs(box)[1] == [(study, [uid])]

        with write_transaction(box.index.engine) as conn:  # a power cut took its row
            conn.execute(delete(schema.instances))
        box.index.remove_instances([])  # forget the series this process remembers
        report = reconcile(box)
        assert (report.scanned, report.indexed) == (1, 1)
        rows, _ = outbox_and_jobs(box)
        assert [p["items"] for _, p in rows] == [[uid]]
        relay(box.index.engine)
        assert outbox_and_jobs(box) == ([], [(study, [uid])])  # in its job once


def test_two_copies_of_one_instance_arriving_at_once_are_taken_one_after_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first copy is named but not yet indexed, the second waits: it must not
    take the first one's file for a half-written leftover. Under ``keep-both`` both are
    kept, as copies 0 and 1."""
    from dicombox.core.ingest import Ingest

    with box_in_this_process(tmp_path) as box:
        ingest = Ingest(box)
        ingest.policy = "keep-both"
        first_indexing, go_on = threading.Event(), threading.Event()
        add_instance = box.index.add_instance

        def slow_first_row(*args: Any, **kwargs: Any) -> Any:
            if not first_indexing.is_set():
                first_indexing.set()
                go_on.wait(10)
            return add_instance(*args, **kwargs)

        monkeypatch.setattr(box.index, "add_instance", slow_first_row)
        outcomes: list[Any] = []
        first = threading.Thread(target=lambda: outcomes.append(ingest_ct_small(box, ingest)))
        first.start()
        assert first_indexing.wait(10)  # the first copy has its name, not yet its row
        second = threading.Thread(target=lambda: outcomes.append(ingest_ct_small(box, ingest)))
        second.start()
        second.join(0.5)
        waited = second.is_alive()
        go_on.set()
        first.join(10)
        second.join(10)
        assert waited  # the second copy waited for the first one's row
        assert sorted(o.status for o, _ in outcomes) == [0, 0]
        paths = sorted(o.extra["path"] for o, _ in outcomes)
        assert len(set(paths)) == 2 and all(box.store.path(p).exists() for p in paths)
        uid = outcomes[0][1].SOPInstanceUID
        assert sorted(r["copy"] for r in box.index.instance_rows(sop_instance_uid=uid)) == [0, 1]


def test_a_series_folder_another_worker_made_is_flushed_into_its_parents_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where folder names need their own flush, a folder found already made (by another
    worker, which may not have flushed its name yet) is flushed into its study's folder
    and the study's into studies/, before the first image there is answered."""
    from dicombox.core import store

    flushed: list[Path] = []
    fsync_dir = store._fsync_dir

    def recording(directory: Path) -> None:
        flushed.append(directory)
        fsync_dir(directory)

    monkeypatch.setattr(store, "_fsync_dir", recording)
    with box_in_this_process(tmp_path) as box:
        box.store.flush_directories = True
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        relpath = box.store.relpath_for(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        series = box.store.path(relpath).parent
        series.mkdir(parents=True)  # as another worker would, not yet flushed
        outcome, _ = ingest_ct_small(box)
        assert outcome.status == 0
        assert flushed == [series.parent, series.parent.parent, series]
        flushed.clear()
        again, _ = ingest_ct_small(box)  # a duplicate there: the folder is not looked at again
        assert again.extra.get("duplicate") and flushed == []


def test_an_instance_is_not_filed_under_a_series_that_took_a_removed_ones_id(
    tmp_path: Path,
) -> None:
    """A worker remembers each series' row id. If the series is removed (the watermark,
    in another process) and SQLite gives its id to a new series, an image of the old
    series sent again must not be filed under the new one."""
    from sqlalchemy import text

    with box_in_this_process(tmp_path) as box:
        outcome, ds = ingest_ct_small(box)  # the index now remembers the series' id
        box.store.path(outcome.extra["path"]).unlink()
        with box.index.engine.begin() as conn:  # what removing the series does
            (series_pk, study_pk) = conn.execute(text("select id, study_pk from series")).one()
            conn.execute(text("delete from instances"))
            conn.execute(text("delete from series"))
            conn.execute(
                text(
                    "insert into series (id, study_pk, series_instance_uid, created_at)"
                    " values (:i, :s, :u, 0)"
                ),
                {"i": series_pk, "s": study_pk, "u": "1.2.3.999"},  # the id given again
            )
        again, _ = ingest_ct_small(box)
        assert again.status == 0
        with box.index.engine.connect() as conn:
            filed_under = conn.execute(
                text(
                    "select s.series_instance_uid from instances i"
                    " join series s on s.id = i.series_pk"
                )
            ).scalar_one()
        assert filed_under == ds.SeriesInstanceUID


def test_a_replacing_copy_the_index_refuses_gives_the_first_copy_its_name_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``duplicates = "replace"`` the new copy takes the name before its row is
    written. If the index then fails (A700), the first copy, which the index still
    describes, is served again; once the row is written, nothing of it is left."""
    from sqlalchemy.exc import OperationalError

    from dicombox.core.ingest import Ingest
    from tests.support.faults import tmp_leftovers

    def index_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO instances", {}, Exception("disk I/O error"))

    with box_in_this_process(tmp_path) as box:
        ingest = Ingest(box)
        ingest.policy = "replace"
        first, _ = ingest_ct_small(box, ingest)
        placed = box.store.path(first.extra["path"])
        first_inode = placed.stat().st_ino
        with monkeypatch.context() as patched:
            patched.setattr(box.index, "add_instance", index_down)
            refused, _ = ingest_ct_small(box, ingest)
        assert refused.status == 0xA700
        assert placed.stat().st_ino == first_inode  # the first copy, not the refused one
        assert tmp_leftovers(box.store.root, [os.getpid()]) == []
        replaced, _ = ingest_ct_small(box, ingest)
        assert replaced.status == 0 and placed.stat().st_ino != first_inode
        assert tmp_leftovers(box.store.root, [os.getpid()]) == []
