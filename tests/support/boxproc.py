"""A dicombox started the way a user starts it (``dicombox serve``), for tests and benches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


class RunningBox:
    def __init__(
        self, data_dir: Path, config_text: str = "", workers: int = 2, ae_title: str = "DICOMBOX"
    ) -> None:
        self.data_dir = data_dir
        self.config = data_dir.parent / f"{data_dir.name}.toml"
        self.config.write_text(config_text)
        self.workers = workers
        self.ae_title = ae_title
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self, timeout: float = 30) -> RunningBox:
        ready = self.data_dir / "run" / "ready.json"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dicombox.core.cli",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data_dir),
                "serve",
                "--port",
                "0",
                "--workers",
                str(self.workers),
                "--ae-title",
                self.ae_title,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dicombox exited with {self.proc.returncode}:\n{self.output()}")
            if ready.exists():
                self.port = json.loads(ready.read_text())["port"]
                return self
            time.sleep(0.05)
        raise RuntimeError(f"dicombox did not become ready:\n{self.output()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ``dicombox`` command against this box's configuration and data."""
        return run_cli("--config", str(self.config), "--data-dir", str(self.data_dir), *args)

    def jobs(self, kind: str) -> list[dict]:
        """This box's jobs of ``kind``, newest first, as ``dicombox jobs --json`` has them."""
        return [j for j in json.loads(self.cli("jobs", "--json").stdout) if j["kind"] == kind]

    def wait_job(self, kind: str, state: str = "", error: str = "", timeout: float = 60) -> dict:
        """The newest job of ``kind`` once it is in ``state``, or once its last error
        (or, for a job waiting on a device, its progress) says ``error``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs(kind)
            if jobs and (
                (state and jobs[0]["state"] == state)
                or (error and error in jobs[0]["last_error"] + jobs[0]["progress"])
            ):
                return jobs[0]
            time.sleep(0.3)
        raise AssertionError(
            f"no {kind} job {state or error!r}: {self.cli('jobs').stdout}\n{self.output()[-2000:]}"
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pids(self) -> list[int]:
        """The supervisor and its network workers."""
        assert self.proc is not None
        return [self.proc.pid, *children_of(self.proc.pid)]

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """Power cut: the supervisor and every worker die at once."""
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self.proc is not None
        self.proc.wait()

    def __enter__(self) -> RunningBox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicombox.core.cli", *args], capture_output=True, text=True
    )
