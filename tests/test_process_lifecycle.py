"""The box's processes from start to end: a stop asked for at any moment of start-up is a
clean stop; no network worker outlives its supervisor, however the supervisor ends; a
DICOM port already held is a one-line error."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dicombox.core.reconcile import CLEAN_MARK
from tests.conftest import require
from tests.support.boxproc import RunningBox, children_of
from tests.support.faults import Tally, burst, join_all, loss, make_study, store_problems, wait_for
from tests.support.peers import free_port, run

QUIET = '[web]\nlisten = ""\n'  # no console: port 8080 may be taken on a test machine


def serve(data_dir: Path, port: int, workers: int = 2) -> subprocess.Popen[str]:
    """``dicombox serve`` on a port of the test's choosing, its output kept apart."""
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text(QUIET)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicombox.core.cli",
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def processes_of(data_dir: Path) -> list[int]:
    """Every process whose command line names ``data_dir`` (the supervisor and its
    workers, wherever they were reparented)."""
    needle = str(data_dir).encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a dead one waiting for its new parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listening(port: int) -> bool:
    """Whether anything listens on ``port``: a socket bound as the box binds cannot listen."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("::", port))
            probe.listen(1)
        except OSError:
            return True
    return False


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def assert_all_gone(
    data_dir: Path, port: int, timeout: float = 10, pids: tuple[int, ...] = ()
) -> None:
    """No process of the box is left (a killed one may take a moment to be torn down),
    and the port is free."""

    def gone() -> bool:
        return not processes_of(data_dir) and not any(alive(pid) for pid in pids)

    assert wait_until(gone, timeout), f"processes left: {processes_of(data_dir)}, of {pids}"
    assert not listening(port), f"something still listens on port {port}"


@pytest.fixture
def used_data_dir(tmp_path: Path) -> Path:
    """A data folder as a box leaves it when it stops cleanly (its clean-stop mark)."""
    data_dir = tmp_path / "var"
    (data_dir / "run").mkdir(parents=True)
    (data_dir / "run" / CLEAN_MARK).touch()
    return data_dir


def ready(data_dir: Path, proc: subprocess.Popen[str]) -> bool:
    """Whether ``proc`` says it is ready (a killed box leaves its ready.json behind)."""
    try:
        return json.loads((data_dir / "run" / "ready.json").read_text())["pid"] == proc.pid
    except (OSError, ValueError):
        return False


def first_worker(proc: subprocess.Popen[str]) -> bool:
    return bool(children_of(proc.pid)) or proc.poll() is not None


def all_workers(proc: subprocess.Popen[str]) -> bool:
    return len(children_of(proc.pid)) >= 2 or proc.poll() is not None


@pytest.mark.parametrize(
    "moment",
    [0.2, 0.6, 1.0, first_worker, all_workers],
    ids=["0.2s", "0.6s", "1.0s", "first-worker-started", "all-workers-started"],
)
def test_sigterm_at_any_moment_of_start_up_is_a_clean_stop(
    used_data_dir: Path, moment: float | Callable[[subprocess.Popen[str]], bool]
) -> None:
    port = free_port()
    proc = serve(used_data_dir, port)
    if callable(moment):
        assert wait_until(lambda: moment(proc), 60)
    else:
        time.sleep(moment)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    # Killed outright only while nothing had started yet (the interpreter loading us).
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert_all_gone(used_data_dir, port)
    # The stop was clean: the next start has nothing to check or recover.
    assert (used_data_dir / "run" / CLEAN_MARK).exists(), err
    if proc.returncode == -signal.SIGTERM:
        assert "dicombox.supervisor" not in err, err


def test_a_stop_during_start_up_ends_in_stopped(used_data_dir: Path) -> None:
    port = free_port()
    proc = serve(used_data_dir, port)
    assert wait_until(lambda: first_worker(proc), 60)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert err.rstrip().endswith("stopped"), err
    assert "ready:" not in err


@pytest.mark.parametrize("moment", ["first-worker-started", "ready"])
def test_no_worker_outlives_a_killed_supervisor(used_data_dir: Path, moment: str) -> None:
    require("echoscu")
    port = free_port()
    proc = serve(used_data_dir, port)
    if moment == "ready":
        assert wait_until(lambda: ready(used_data_dir, proc), 60)
        assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", port]).returncode == 0
    else:
        assert wait_until(lambda: first_worker(proc), 60)
    workers = children_of(proc.pid)
    assert workers
    proc.kill()
    proc.communicate(timeout=30)
    assert_all_gone(used_data_dir, port, timeout=5, pids=tuple(workers))
    # Nobody answers on the port; a new box takes it and serves.
    assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", port]).returncode != 0
    again = serve(used_data_dir, port)
    try:
        assert wait_until(lambda: ready(used_data_dir, again), 60)
        assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", port]).returncode == 0
    finally:
        again.send_signal(signal.SIGTERM)
        _, err = again.communicate(timeout=90)
    assert again.returncode == 0, err
    assert_all_gone(used_data_dir, port)


def test_workers_of_a_killed_supervisor_take_nothing_more_and_keep_what_they_acknowledged(
    tmp_path: Path,
) -> None:
    box = RunningBox(tmp_path / "var", QUIET).start()
    study = make_study(300, rows=64, columns=64)
    tally = Tally()
    senders = burst(box.port, study, 3, tally)
    wait_for(lambda: tally.count >= 20, 120, "20 acknowledgements")
    assert box.proc is not None
    workers = children_of(box.proc.pid)
    box.proc.kill()  # the supervisor alone
    box.proc.wait()
    join_all(senders, timeout=60)
    acknowledged = dict(tally.acknowledged)
    # Every association was cut where it stood: no orphan went on answering.
    assert len(tally.broken) == 3, tally.broken
    assert len(acknowledged) < len(study)
    assert_all_gone(box.data_dir, box.port, timeout=5, pids=tuple(workers))
    box.start()
    try:
        assert loss(box.data_dir, acknowledged) == []
        assert store_problems(box.data_dir) == []
    finally:
        assert box.stop() == 0


def one_line_refusal(proc: subprocess.Popen[str], port: int) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None), out + err
    assert "Traceback" not in err + out
    (line,) = [x for x in err.splitlines() if str(port) in x]
    assert "in use" in line
    return line


def test_a_port_held_by_another_program_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        line = one_line_refusal(serve(tmp_path / "var", port), port)
    assert f"pid {os.getpid()}" in line
    assert not processes_of(tmp_path / "var")


def test_a_port_held_by_a_running_box_is_a_one_line_error(tmp_path: Path) -> None:
    require("echoscu")
    first = RunningBox(tmp_path / "first").start()
    try:
        for data_dir in (tmp_path / "second", first.data_dir):  # another box, or the same again
            line = one_line_refusal(serve(data_dir, first.port), first.port)
            assert "dicombox" in line and f"pid {first.proc.pid}" in line
        assert not processes_of(tmp_path / "second")
        # The running box was left alone: it still answers, on all its workers.
        assert sorted(processes_of(first.data_dir)) == sorted(first.pids())
        for _ in range(4):
            assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", first.port]).returncode == 0
        assert (first.data_dir / "run" / "ready.json").exists()
    finally:
        assert first.stop() == 0
