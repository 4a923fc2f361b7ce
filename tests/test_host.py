"""The host as a site engineer meets it: systemd readiness, IPv6, a worker that dies,
and the status, echo and jobs commands."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from pynetdicom import AE

from dicombox.core.index.engine import close_engine, open_engine, sqlite_url
from dicombox.core.jobs import JobQueue
from tests.conftest import require
from tests.support.boxproc import RunningBox, children_of
from tests.support.peers import run


def test_systemd_hears_ready_and_stopping(tmp_path: Path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    box = RunningBox(tmp_path / "var").start()
    messages = [listener.recv(4096).decode()]
    assert messages[0].startswith("READY=1") and f"port {box.port}" in messages[0]
    box.stop()
    messages.append(listener.recv(4096).decode())
    assert messages[1] == "STOPPING=1"


def test_echo_over_ipv6_loopback(box):
    # Debian's echoscu has no IPv6 switch, so pynetdicom is the peer here.
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    ae = AE(ae_title="V6SCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("::1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_a_dead_worker_is_replaced(box):
    require("echoscu")
    workers = children_of(box.proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children_of(box.proc.pid)
        if len(now) == len(workers) and workers[0] not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the supervisor did not start a new worker")
    assert "exited with -9; starting another" in box.output()
    for _ in range(4):  # whichever worker takes it, the box answers
        assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", box.port]).returncode == 0


def test_echo_a_configured_remote_by_name(make_box):
    target = make_box(name="target")
    caller = make_box(
        f"""
[[remote]]
name = "archive"
ae_title = "DICOMBOX"
host = "127.0.0.1"
port = {target.port}
""",
        name="caller",
    )
    ok = caller.cli("--config", str(caller.config), "echo", "archive")
    assert ok.returncode == 0 and "echo archive: DICOMBOX@127.0.0.1" in ok.stdout
    unknown = caller.cli("--config", str(caller.config), "echo", "nowhere")
    assert unknown.returncode == 2 and "known: archive" in unknown.stdout
    target.stop()
    down = caller.cli("--config", str(caller.config), "echo", "archive")
    assert down.returncode == 1 and "FAILED" in down.stdout


def test_status_and_jobs_commands(box):
    status = box.cli("status")
    assert status.returncode == 0
    assert f"running: DICOMBOX on port {box.port}" in status.stdout
    assert "stored: 0 studies, 0 instances" in status.stdout
    engine = open_engine(sqlite_url(box.data_dir.resolve()))
    job = JobQueue(engine).enqueue("example", {"to": "pacs"}, queue="pacs")  # no runner takes it
    close_engine(engine)
    (row,) = box.cli("jobs").stdout.splitlines()[1:]
    assert row.split()[:5] == [str(job), "example", "pacs", "queued", "0/3"]
    assert box.cli("jobs", "cancel", str(job)).returncode == 0
    assert "cancelled" in box.cli("jobs").stdout
    box.stop()
    assert box.cli("status").returncode == 3
