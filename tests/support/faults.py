"""Tools for the fault tests and the soak: senders that know exactly which instances the
box acknowledged, a way to stop the box in the middle of an index write, and the checks
that the store and the index agree after a restart.

The senders speak the upper layer by hand (as ``rawclient`` does) rather than through
pynetdicom: the bytes a C-STORE carries are then exactly the bytes we keep to compare
with, and an instance counts as acknowledged at the moment its 0000 response is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicombox.core.net import commands, pdu
from tests.support import rawclient
from tests.support.boxproc import RunningBox
from tests.support.synthetic import ct_dataset

VERIFICATION = "1.2.840.10008.1.1"
SUCCESS = 0x0000


# --------------------------------------------------------------------------- instances
@dataclass(frozen=True)
class Instance:
    """One data set as a C-STORE carries it (Explicit VR Little Endian), and the SHA-256
    of those bytes (all a long soak keeps of what it sent)."""

    sop_instance_uid: str
    study_instance_uid: str
    data: bytes
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def digest_only(self) -> Instance:
        return dataclasses.replace(self, data=b"")


def encode(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def make_study(
    count: int, rows: int = 32, columns: int = 32, patient: str = "FAULT^TEST"
) -> list[Instance]:
    """``count`` CT instances of one new study; each has its own pixels."""
    study, series = generate_uid(), generate_uid()
    made = []
    for n in range(1, count + 1):
        ds = ct_dataset(study, series, n, rows=rows, columns=columns, patient=patient)
        del ds.file_meta  # a C-STORE carries the data set alone
        made.append(Instance(str(ds.SOPInstanceUID), study, encode(ds)))
    return made


def write_files(instances: Iterable[Instance], folder: Path) -> list[Path]:
    """The instances as Part 10 files, for DCMTK senders."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, inst in enumerate(instances):
        ds = pydicom.dcmread(io.BytesIO(inst.data), force=True)
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------ associations
@dataclass
class Answer:
    """What the box said to an A-ASSOCIATE-RQ."""

    pdu_type: int
    body: bytes

    @property
    def accepted(self) -> bool:
        return self.pdu_type == pdu.A_ASSOCIATE_AC

    def rejection(self) -> tuple[int, int, int]:
        """(result, source, reason) of an A-ASSOCIATE-RJ (PS3.8 §9.3.4)."""
        assert self.pdu_type == pdu.A_ASSOCIATE_RJ, f"PDU type {self.pdu_type} is no rejection"
        return self.body[1], self.body[2], self.body[3]


def associate(
    port: int,
    abstract_syntax: str = CTImageStorage,
    calling: str = "FAULTSCU",
    called: str = "DICOMBOX",
    timeout: float = 60,
) -> tuple[socket.socket, Answer]:
    """Ask for an association with one presentation context (id 1, Explicit VR Little
    Endian). Unlike ``rawclient.associate`` it takes a timeout (64 peers at once on two
    loaded cores can take a while) and hands back a rejection's reasons."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(rawclient.associate_rq(abstract_syntax, ExplicitVRLittleEndian, calling, called))
    pdu_type, body = rawclient.read_pdu(sock)
    return sock, Answer(pdu_type, body)


def store(sock: socket.socket, inst: Instance) -> int:
    return rawclient.c_store(sock, CTImageStorage, inst.sop_instance_uid, inst.data)


def echo(port: int, timeout: float = 60) -> int:
    """C-ECHO on an association of its own; the status."""
    sock, answer = associate(port, VERIFICATION, timeout=timeout)
    assert answer.accepted, f"C-ECHO association refused: PDU type {answer.pdu_type}"
    command = commands.encode_command(
        CommandField=commands.C_ECHO_RQ,
        MessageID=1,
        CommandDataSetType=commands.NO_DATASET,
        AffectedSOPClassUID=VERIFICATION,
    )
    sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0])
    pdu_type, body = rawclient.read_pdu(sock)
    assert pdu_type == pdu.P_DATA_TF
    status = int(commands.decode_command(body[6:]).Status)
    rawclient.release(sock)
    return status


@dataclass
class Tally:
    """What senders learned, shared between their threads."""

    acknowledged: dict[str, Instance] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # uid -> failure status
    broken: list[str] = field(default_factory=list)  # why associations ended early
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_data: bool = True  # False: remember digests only (a soak sends gigabytes)

    def ack(self, inst: Instance) -> None:
        with self.lock:
            self.acknowledged[inst.sop_instance_uid] = (
                inst if self.keep_data else inst.digest_only()
            )

    def refuse(self, inst: Instance, status: int) -> None:
        with self.lock:
            self.refused[inst.sop_instance_uid] = status

    def broke(self, why: str) -> str:
        with self.lock:
            self.broken.append(why)
        return why

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def send_all(port: int, instances: list[Instance], tally: Tally, calling: str = "FAULTSCU") -> str:
    """Store ``instances`` on one association, noting each answer; returns why the
    association ended early, or ''. A box that dies midway ends it (no exception: that
    is what the fault tests cause)."""
    try:
        sock, answer = associate(port, calling=calling)
    except OSError as exc:
        return tally.broke(f"connect: {exc}")
    if not answer.accepted:
        sock.close()
        return tally.broke(f"association refused: PDU type {answer.pdu_type}")
    try:
        for inst in instances:
            status = store(sock, inst)
            if status == SUCCESS:
                tally.ack(inst)
            else:
                tally.refuse(inst, status)
        rawclient.release(sock)
    except (OSError, AssertionError) as exc:  # killed box: reset, closed, or an A-ABORT
        return tally.broke(f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()
    return ""


def burst(
    port: int, instances: list[Instance], associations: int, tally: Tally
) -> list[threading.Thread]:
    """Start sending ``instances`` spread over ``associations`` concurrent associations."""
    threads = [
        threading.Thread(
            target=send_all,
            args=(port, instances[n::associations], tally, f"BURST{n}"),
            daemon=True,
        )
        for n in range(associations)
    ]
    for t in threads:
        t.start()
    return threads


def join_all(threads: list[threading.Thread], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a sender hung"


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ the box's processes
@contextmanager
def frozen(pids: list[int]) -> Iterator[list[int]]:
    """These processes (a box's, from ``box.pids()`` taken beforehand: finding them
    scans /proc, far slower than what we try to catch) stopped with SIGSTOP while
    inside, continued after unless the caller killed them meanwhile. A stopped box is a
    snapshot: what it was doing at that instant it is still doing when SIGKILL comes."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        # kill() returns before a process running on another core has stopped; look
        # only once every thread of every process is seen stopped.
        wait_for(lambda: all(map(stopped, pids)), 30, "the box to stop")
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` stopped by a signal (state T), or ``pid`` gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except FileNotFoundError:
            continue
        # "tid (comm) S ...": the state follows the command name's closing parenthesis
        if stat[stat.rindex(")") + 2] not in "TtZX":
            return False
    return True


def kill_when(box: RunningBox, condition: Callable[[], object], timeout: float, what: str) -> None:
    """SIGKILL the box at the first instant ``condition()`` is seen true and still holds
    once the box is frozen."""
    pids = box.pids()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            with frozen(pids):
                if condition():
                    box.kill()
                    return
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def lock_holders(lock_file: Path) -> set[int]:
    """The processes holding a flock on ``lock_file``, from /proc/locks."""
    st = os.stat(lock_file)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF" (a waiter has "->" after "1:")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
            holders.add(int(fields[4]))
    return holders


def kill_inside_index_write(
    box: RunningBox,
    timeout: float = 60,
    also: Callable[[], bool] = lambda: True,
    whole_box: bool = True,
) -> int:
    """SIGKILL the whole box (or with ``whole_box`` False that worker alone) at an
    instant when one of its network workers is inside an index write transaction
    (storing an instance), and ``also()`` holds; return that worker's pid.

    Every SQLite write of the box runs under a flock on ``index.sqlite.writer-lock``
    (core/index/engine.py), taken before BEGIN IMMEDIATE and dropped after COMMIT. We
    watch that lock; when it is held we freeze the box and look again, so the kill
    lands while the holder is certainly between taking and dropping it. The
    supervisor's own writes (the job runner's polls) do not count."""
    lock_file = box.data_dir / "index.sqlite.writer-lock"
    deadline = time.monotonic() + timeout
    box_pids = box.pids()
    while time.monotonic() < deadline:
        if lock_holders(lock_file):
            with frozen(box_pids) as pids:
                inside = lock_holders(lock_file) & set(pids[1:])
                if inside and also():
                    worker = inside.pop()
                    if whole_box:
                        box.kill()
                    else:  # that worker alone; the supervisor is to notice and clear up
                        os.kill(worker, signal.SIGKILL)
                    return worker
        time.sleep(0.0005)
    raise AssertionError("never saw a worker inside an index write")


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# -------------------------------------------------------------------- store and index


def after_meta(raw: bytes) -> bytes:
    """The data set of a Part 10 file, as received: the bytes after its file meta."""
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00", "not Part 10"
    (meta_length,) = struct.unpack("<I", raw[140:144])
    return raw[144 + meta_length :]


def read_only(data_dir: Path) -> sqlite3.Connection:
    """The box's index, opened read-only next to the running box (WAL lets us)."""
    return sqlite3.connect(f"file:{data_dir / 'index.sqlite'}?mode=ro", uri=True, timeout=30)


def index_paths(data_dir: Path) -> dict[str, str]:
    """{SOP Instance UID: path relative to the data folder} of the index's originals."""
    with closing(read_only(data_dir)) as db:
        rows = db.execute("select sop_instance_uid, path from instances where copy = 0")
        return dict(rows.fetchall())


def integrity(data_dir: Path) -> str:
    with closing(read_only(data_dir)) as db:
        return str(db.execute("pragma integrity_check").fetchone()[0])


def jobs_of(data_dir: Path, kind: str) -> list[dict]:
    """Jobs of ``kind`` straight from the index (cheaper than ``dicombox jobs`` in a
    tight poll), oldest first."""
    with closing(read_only(data_dir)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("select * from jobs where kind = ? order by id", (kind,))
        return [dict(r) for r in rows]


def outbox_rows(data_dir: Path) -> list[dict]:
    """Route jobs written with their instances that the supervisor has not yet turned
    into jobs (core/outbox.py): kind, and the payload's group and items."""
    with closing(read_only(data_dir)) as db:
        rows = db.execute("select kind, payload from outbox order by id").fetchall()
    return [{"kind": kind, **json.loads(payload)} for kind, payload in rows]


def unindexed_files(data_dir: Path) -> list[Path]:
    """Files in their final place that the index does not list (yet): an instance
    between its fsync and its index row's commit."""
    known = set(index_paths(data_dir).values())
    return [
        p
        for p in (data_dir / "studies").rglob("*.dcm")
        if p.relative_to(data_dir).as_posix() not in known
    ]


def partial_files(data_dir: Path) -> list[Path]:
    """Data sets begun under ``tmp/`` and not (yet) placed. The empty files a worker keeps
    made ahead of need (core/tempfiles.py) are no data set: a begun one holds its file
    meta at least. (A running box may remove a file between the listing and its look.)"""
    begun = []
    for path in (data_dir / "tmp").glob("*.part"):
        try:
            if path.stat().st_size > 0:
                begun.append(path)
        except FileNotFoundError:
            continue
    return sorted(begun)


def tmp_leftovers(data_dir: Path, pids: Iterable[int]) -> list[str]:
    """What is in ``tmp/`` beyond the empty files the box's live processes ``pids`` made
    ahead of need (at most SPARES each, named after their pid): partial data sets, second
    links, scratch folders, anything of a dead process."""
    from dicombox.core.tempfiles import SPARES

    made_ahead: dict[str, int] = {}
    left = []
    live = {f"{pid}-" for pid in pids}
    for entry in sorted((data_dir / "tmp").iterdir()):
        owner = entry.name.split("-", 1)[0] + "-"
        try:
            empty_part = entry.suffix == ".part" and entry.stat().st_size == 0
        except FileNotFoundError:
            continue
        if empty_part and owner in live and made_ahead.get(owner, 0) < SPARES:
            made_ahead[owner] = made_ahead.get(owner, 0) + 1
        else:
            left.append(entry.name)
    return left


def whole(path: Path) -> str:
    """'' if ``path`` parses to its end as a DICOM file with all its pixels, else why not."""
    try:
        ds = pydicom.dcmread(path)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * 2
        if len(ds.PixelData) != expected:
            return f"{len(ds.PixelData)} of {expected} pixel bytes"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def store_problems(data_dir: Path) -> list[str]:
    """Where the store and the index disagree: an index row without a whole file, a
    stored file the index does not know, a partial file left in tmp/, a damaged
    database. Empty when all is well."""
    problems = []
    check = integrity(data_dir)
    if check != "ok":
        problems.append(f"index integrity_check: {check}")
    indexed = index_paths(data_dir)
    for uid, relpath in indexed.items():
        path = data_dir / relpath
        if not path.exists():
            problems.append(f"{uid}: indexed, but {relpath} is missing")
        elif why := whole(path):
            problems.append(f"{uid}: indexed, but {relpath} is not whole: {why}")
    known = set(indexed.values())
    for path in (data_dir / "studies").rglob("*.dcm"):
        if path.relative_to(data_dir).as_posix() not in known:
            problems.append(f"{path.relative_to(data_dir)}: stored but not indexed")
    problems += [f"{p.name}: partial file left in tmp/" for p in partial_files(data_dir)]
    return problems


def loss(data_dir: Path, acknowledged: dict[str, Instance]) -> list[str]:
    """Acknowledged instances not in the index, or whose stored data set differs by a
    single byte from what was sent. Empty when nothing acknowledged was lost."""
    indexed = index_paths(data_dir)
    lost = []
    for uid, inst in acknowledged.items():
        relpath = indexed.get(uid)
        if relpath is None:
            lost.append(f"{uid}: acknowledged, not in the index")
        elif (
            hashlib.sha256(after_meta((data_dir / relpath).read_bytes())).hexdigest() != inst.sha256
        ):
            lost.append(f"{uid}: stored bytes differ from those sent")
    return lost
