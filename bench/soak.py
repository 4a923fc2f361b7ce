"""Soak: the box at a steady load for a long while, its memory and open files watched.

Senders store fresh instances in batches of one association each (each acknowledged
SOP Instance UID is noted), DCMTK storescu sends the same small study over and over
(the duplicate path), a query peer runs C-FIND and C-ECHO every two seconds, and a rude
peer drops its connection in the middle of a data set every ten seconds. After a
warm-up the load pauses, the box settles, and its resident memory (supervisor and
network workers, summed) and open file descriptors are taken; at the end the same is
done again, so the two figures compare like with like. Then every acknowledged instance
is looked up in the index and its file compared byte for byte with what was sent.

    .venv/bin/python -m bench.soak [--minutes 15] [--senders 2] [--dir D]

Exits 1 when an acknowledged instance is missing or altered, or any operation failed.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage
from pynetdicom import AE

from dicombox.core.net import pdu
from tests.support import faults, rawclient
from tests.support.boxproc import RunningBox, rss_kib
from tests.support.peers import storescu

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CONFIG = '[web]\nlisten = ""\n'
BATCH = 50  # instances per sender association
RUDE_EVERY_S = 10.0
QUERY_EVERY_S = 2.0


@dataclass
class Sample:
    at_s: float
    rss_kib: int
    fds: int
    stored: int


@dataclass
class SoakReport:
    seconds: float = 0.0
    acknowledged: int = 0
    duplicates_sent: int = 0
    queries: int = 0
    echoes: int = 0
    rude: int = 0
    indexed: int = 0
    start: Sample | None = None
    end: Sample | None = None
    peak_rss_kib: int = 0
    peak_fds: int = 0
    timeline: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    box_warnings: list[str] = field(default_factory=list)  # the box's log, but the rude peer's

    @property
    def ok(self) -> bool:
        return not self.failures and not self.lost


class Load:
    """The load's threads. ``running`` pauses and resumes them between rounds; each
    says when it is idle, so the box can be measured with nothing in flight."""

    def __init__(self, box: RunningBox, work: Path, senders: int) -> None:
        self.box = box
        self.work = work
        self.tally = faults.Tally(keep_data=False)
        self.report = SoakReport()
        self.running = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle: dict[str, threading.Event] = {}
        duplicates = faults.make_study(20, rows=64, columns=64, patient="SOAK^DUPLICATE")
        self.duplicate_files = faults.write_files(duplicates, work / "duplicates")
        self.duplicate_uids = {i.sop_instance_uid for i in duplicates}
        loops: list[tuple[str, Callable[[], None], float]] = [
            *((f"sender{n}", self.send_batch, 0.0) for n in range(senders)),
            ("storescu", self.send_duplicates, 0.0),
            ("query", self.query, QUERY_EVERY_S),
            ("rude", self.rude_peer, RUDE_EVERY_S),
        ]
        self.threads = [
            threading.Thread(target=self._loop, args=loop, name=loop[0], daemon=True)
            for loop in loops
        ]

    def fail(self, what: str) -> None:
        with self._lock:
            self.report.failures.append(what)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self.report, name, getattr(self.report, name) + 1)

    def _loop(self, name: str, round_: Callable[[], None], every_s: float) -> None:
        idle = self._idle[name] = threading.Event()
        while not self.stopping.is_set():
            if not self.running.is_set():
                idle.set()
                self.running.wait(0.2)
                continue
            idle.clear()
            started = time.monotonic()
            try:
                round_()
            except Exception as exc:  # a failed round is a finding, not a crash of the soak
                self.fail(f"{name}: {type(exc).__name__}: {exc}")
            if every_s:
                self.stopping.wait(max(0.0, every_s - (time.monotonic() - started)))
        idle.set()

    def start(self) -> None:
        self.running.set()
        for t in self.threads:
            t.start()

    def pause(self, timeout: float = 120) -> None:
        self.running.clear()
        deadline = time.monotonic() + timeout
        while not all(e.is_set() for e in self._idle.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the load did not pause")
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.running.set()
        for t in self.threads:
            t.join(120)

    # ------------------------------------------------------------------ the rounds
    def send_batch(self) -> None:
        batch = faults.make_study(BATCH, rows=64, columns=64, patient="SOAK^FRESH")
        broke = faults.send_all(self.box.port, batch, self.tally, calling="SOAKSCU")
        if broke:
            self.fail(f"sender association broke: {broke}")

    def send_duplicates(self) -> None:
        result = storescu(self.box.port, self.duplicate_files, aet="SOAKDUP", timeout=300)
        if result.returncode != 0:
            self.fail(f"storescu exit {result.returncode}: {result.stderr[-300:]}")
        else:
            self.count("duplicates_sent")

    def query(self) -> None:
        status = faults.echo(self.box.port)
        if status != 0:
            self.fail(f"C-ECHO status {status:04X}")
        self.count("echoes")
        ae = AE(ae_title="SOAKFIND")
        ae.add_requested_context(STUDY_ROOT_FIND)
        ae.dimse_timeout = ae.network_timeout = ae.acse_timeout = 60
        assoc = ae.associate("127.0.0.1", self.box.port, ae_title="DICOMBOX")
        if not assoc.is_established:
            self.fail("C-FIND association not established")
            return
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.PatientName = "SOAK^DUPLICATE"
        identifier.StudyInstanceUID = ""
        statuses = [int(s.Status) for s, _ in assoc.send_c_find(identifier, STUDY_ROOT_FIND) if s]
        assoc.release()
        # The duplicate study is stored by the first storescu round: one match, then 0000.
        if not statuses or statuses[-1] != 0:
            self.fail(f"C-FIND statuses {statuses}")
        self.count("queries")

    def rude_peer(self) -> None:
        """Half a data set, then the connection dropped: the box must keep nothing of it
        and free whatever the association held."""
        inst = faults.make_study(1, rows=256, columns=256, patient="SOAK^RUDE")[0]
        sock, answer = faults.associate(self.box.port, calling="SOAKRUDE")
        if not answer.accepted:
            self.fail(f"rude peer's association refused (PDU type {answer.pdu_type})")
            sock.close()
            return
        command = rawclient.store_command(CTImageStorage, inst.sop_instance_uid)
        data = pdu.p_data_pdus(1, inst.data, False, 0)[0]
        sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0] + data[: len(data) // 2])
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        self.count("rude")


def measure(box: RunningBox, started: float) -> Sample:
    pids = box.pids()
    stored = len(faults.index_paths(box.data_dir))
    return Sample(
        round(time.monotonic() - started, 1),
        sum(rss_kib(p) for p in pids),
        sum(faults.fd_count(p) for p in pids),
        stored,
    )


def settled(box: RunningBox, started: float, rounds: int = 20) -> Sample:
    """A measurement with nothing in flight: the load paused, the box's open files no
    longer changing (associations closed, partial files swept)."""
    last = measure(box, started)
    for _ in range(rounds):
        time.sleep(0.5)
        now = measure(box, started)
        if now.fds == last.fds and not faults.partial_files(box.data_dir):
            return now
        last = now
    return last


def run(minutes: float, work: Path, senders: int = 2, warmup_s: float = 30.0) -> SoakReport:
    box = RunningBox(work / "var", CONFIG)
    box.start()
    load = Load(box, work, senders)
    report = load.report
    started = time.monotonic()
    try:
        pids = set(box.pids())
        load.start()
        time.sleep(warmup_s)
        load.pause()
        report.start = settled(box, started)
        load.running.set()
        deadline = time.monotonic() + minutes * 60
        next_sample = time.monotonic()
        while time.monotonic() < deadline:
            if time.monotonic() >= next_sample:
                sample = measure(box, started)
                report.timeline.append(sample)
                report.peak_rss_kib = max(report.peak_rss_kib, sample.rss_kib)
                report.peak_fds = max(report.peak_fds, sample.fds)
                next_sample += 60
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        load.pause()
        report.end = settled(box, started)
        report.seconds = round(time.monotonic() - started, 1)
        if set(box.pids()) != pids:
            report.failures.append(f"box processes changed: {sorted(pids)} -> {box.pids()}")
    finally:
        load.stop()
        code = box.stop()
    if code != 0:
        report.failures.append(f"the box's clean stop exited {code}")
    report.box_warnings = [
        line
        for line in box.output().splitlines()
        if (" WARNING " in line or " ERROR " in line) and "SOAKRUDE" not in line
    ]
    report.acknowledged = len(load.tally.acknowledged)
    report.failures += [f"refused {u}: {s:04X}" for u, s in load.tally.refused.items()]
    indexed = faults.index_paths(box.data_dir)
    report.indexed = len(indexed)
    report.lost = faults.loss(box.data_dir, load.tally.acknowledged)
    report.lost += [f"{u}: storescu's, not indexed" for u in load.duplicate_uids - set(indexed)]
    report.lost += [f"{p.name}: partial file left" for p in faults.partial_files(box.data_dir)]
    if faults.integrity(box.data_dir) != "ok":
        report.lost.append("the index fails its integrity check")
    return report


def print_report(report: SoakReport, minutes: float) -> None:
    assert report.start is not None and report.end is not None
    print("  at s    RSS MiB    fds   instances")
    for s in report.timeline:
        print(f"{s.at_s:6.0f} {s.rss_kib / 1024:10.1f} {s.fds:6d} {s.stored:11d}")
    rows = [
        ("duration under load", f"{minutes:g} min (+ warm-up)", ""),
        ("instances acknowledged", str(report.acknowledged), ""),
        ("instances in the index", str(report.indexed), ""),
        ("storescu rounds (duplicates)", str(report.duplicates_sent), ""),
        ("C-FIND / C-ECHO", f"{report.queries} / {report.echoes}", ""),
        ("dropped connections", str(report.rude), ""),
        (
            "RSS, all processes (MiB)",
            f"{report.start.rss_kib / 1024:.1f} -> {report.end.rss_kib / 1024:.1f}",
            f"peak {report.peak_rss_kib / 1024:.1f}",
        ),
        (
            "open files, all processes",
            f"{report.start.fds} -> {report.end.fds}",
            f"peak {report.peak_fds}",
        ),
        ("failures", str(len(report.failures)), ""),
        ("acknowledged but lost", str(len(report.lost)), ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<24} {note}")
    for what in report.failures[:20] + report.lost[:20]:
        print("  " + what[:300])
    if report.box_warnings:
        print(f"the box's log has {len(report.box_warnings)} warning(s) or error(s):")
        for line in report.box_warnings[:20]:
            print("  " + line[:300])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--senders", type=int, default=2, help="concurrent storing associations")
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--dir", help="where the box keeps its data (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-soak-", dir=args.dir) as tmp:
        report = run(args.minutes, Path(tmp), args.senders, args.warmup_s)
    print_report(report, args.minutes)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
