"""``dicombox serve``: the supervisor owns what must be single (job runner, devices,
schedules) and keeps N network workers running on one shared listening socket."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicombox.core.audit import os_user
from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.events import EventChannelServer
from dicombox.core.jobs import JobRunner
from dicombox.core.logs import setup_logging
from dicombox.core.net.port_holder import port_holder
from dicombox.core.net.server import make_listener
from dicombox.core.outbox import OutboxRelay
from dicombox.core.reconcile import mark_clean, mark_running, reconcile, was_clean
from dicombox.core.sdnotify import notify, watchdog_interval_s

log = logging.getLogger("dicombox.supervisor")
RESTART_DELAY_S = 1.0
WORKER_START_TIMEOUT_S = 60


class ListenError(Exception):
    """A port the box cannot listen on; the text says which and why, in one line."""


class StopRequest:
    """The SIGTERM and SIGINT handler, installed before anything is started: a stop asked
    for while the box is still starting unwinds what has started (workers, listeners)
    and ends in a clean stop, instead of killing the supervisor and leaving its workers
    behind."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.serving = False  # start-up is over (a restart on SIGUSR2 waits for that)

    def __call__(self, _signum: int, _frame: object) -> None:
        self.event.set()


class _ReadyCounter:
    """Counts "worker.ready" events, so the box says ready only when every worker is:
    associations arriving earlier would all land on the first worker up."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self._all = threading.Event()

    def __call__(self, _event: object) -> None:
        self.count += 1
        if self.count >= self.expected:
            self._all.set()

    def wait(self, timeout: float) -> bool:
        return self._all.wait(timeout)


class WorkerPool:
    """Starts the network workers and starts a new one whenever one dies."""

    def __init__(
        self,
        count: int,
        fd: int,
        config_path: str | None,
        overrides: dict[str, Any],
        tls_fd: int = -1,
        on_death: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.count = count
        self.on_death = on_death  # called with the pid of a worker that died or was killed
        self.fd = fd
        self.tls_fd = tls_fd
        self.config_path = config_path
        self.overrides = overrides
        self.procs: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no worker is started while the pool is stopping
        self._reaped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="workers", daemon=True)

    def _spawn(self, number: int) -> None:
        cmd = [
            sys.executable,
            "-m",
            "dicombox.core.worker",
            "--fd",
            str(self.fd),
            "--overrides",
            json.dumps(self.overrides),
            "--number",
            str(number),
            "--supervisor",  # the worker dies with this process (parent_death)
            str(os.getpid()),
        ]
        if self.config_path:
            cmd += ["--config", self.config_path]
        fds = [self.fd]
        if self.tls_fd >= 0:
            cmd += ["--tls-fd", str(self.tls_fd)]
            fds.append(self.tls_fd)
        self.procs[number] = subprocess.Popen(cmd, pass_fds=fds)

    def start(self) -> None:
        with self._lock:
            for n in range(self.count):
                self._spawn(n)
        self._thread.start()

    def _watch(self) -> None:
        # The kernel kills a worker when the *thread* that started it ends (the death
        # signal follows the parent thread), and this thread starts the replacements: so
        # it lives until every worker has been waited for, and survives its own errors.
        while not self._reaped.wait(0.5):
            try:
                self._replace_dead()
            except Exception:
                log.exception("watching the network workers failed; trying again")

    def _replace_dead(self) -> None:
        for number, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or self._stopping.is_set():
                continue
            log.error(
                "network worker %d (pid %d) exited with %s; starting another",
                number,
                proc.pid,
                code,
            )
            self._bury(proc.pid)
            if self._stopping.wait(RESTART_DELAY_S):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._spawn(number)

    def stop(self, timeout: float) -> None:
        with self._lock:
            self._stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not finish in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
                self._bury(proc.pid)
        self._reaped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _bury(self, pid: int) -> None:
        try:
            self.on_death(pid)
        except Exception:
            log.exception("clearing up after worker pid %d failed", pid)


def _after_worker_death(box: Box, pid: int) -> None:
    """A worker died or was killed: remove what it was receiving (never answered, so its
    sender will send it again). Nothing it indexed lacks its routes: they went into the
    index with its row (the outbox)."""
    swept = box.store.sweep_temporary(f"{pid}-")
    if swept:
        log.warning("after worker pid %d: %d partial file(s) removed", pid, swept)


def _write_ready(box: Box, port: int, workers: int, tls_port: int = 0) -> Path:
    path = box.run_dir / "ready.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "ae_title": box.config.box.ae_title,
                "port": port,
                "tls_port": tls_port,
                "workers": workers,
                "started": time.time(),
                "config": box.config.source,
            }
        )
    )
    os.replace(tmp, path)
    return path


def _listen(bind: str, port: int, what: str) -> socket.socket:
    try:
        return make_listener(bind, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(port)
            raise ListenError(
                f"cannot listen on {what} {port}: it is already in use"
                + (f" by {holder}" if holder else "")
            ) from None
        raise ListenError(f"cannot listen on {what} {port} ({bind}): {exc.strerror}") from None


def _wait_for_workers(started: _ReadyCounter, stop: threading.Event) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not started.wait(0.1) and not stop.is_set():
        if time.monotonic() > deadline:
            log.warning(
                "only %d of %d network workers ready after %d s; going on",
                started.count,
                started.expected,
                WORKER_START_TIMEOUT_S,
            )
            return


def serve(config_path: str | None, **overrides: Any) -> int:
    stop = StopRequest()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    config, pm, infos = load_plugins_and_config(config_path, **overrides)
    setup_logging(config.log.level, config.log.format)
    # The ports first, before the data folder is touched: a box started a second time
    # must find out here, not after sweeping the running box's files away. The socket
    # has no SO_REUSEPORT, so a port another box listens on is refused here.
    listener = _listen(config.box.bind, config.box.port, "port")
    port = listener.getsockname()[1]
    try:
        tls_listener = (
            _listen(config.box.bind, config.network.tls_port, "TLS port")
            if config.network.tls_port
            else None
        )
    except ListenError:
        listener.close()
        raise
    box = open_box(config, pm, infos, role="supervisor")
    unindexed = 0  # files the check could not index: it runs again at the next start
    if not stop.event.is_set() and not was_clean(box.run_dir) and any(box.store.studies.iterdir()):
        log.warning("the last stop was not clean: checking the store against the index")
        report = reconcile(box)
        unindexed = report.unindexed
        log.warning(
            "store checked: %d file(s), %d re-indexed, %d quarantined, %d not indexed",
            report.scanned,
            report.indexed,
            report.quarantined,
            report.unindexed,
        )
    if stop.event.is_set():
        # Nothing runs yet and the clean-stop mark is as the last stop left it (a store
        # still to check is checked at the next start).
        listener.close()
        if tls_listener is not None:
            tls_listener.close()
        box.close()
        log.info("stopped before starting")
        return 0
    mark_running(box.run_dir)
    swept = box.store.sweep_temporary()
    requeued = box.jobs.recover_interrupted()
    if swept or requeued:
        log.info(
            "recovered after an unclean stop: %d partial file(s) removed, %d job(s) requeued",
            swept,
            requeued,
        )
    channel = EventChannelServer(box.run_dir / "events.sock", box.bus)
    channel.start()
    workers = config.box.workers or os.cpu_count() or 1
    started = _ReadyCounter(workers)
    box.bus.subscribe("worker.ready", started)
    pool = WorkerPool(
        workers,
        listener.fileno(),
        config_path,
        {k: v for k, v in overrides.items() if v is not None} | {"port": port},
        tls_listener.fileno() if tls_listener is not None else -1,
        on_death=lambda pid: _after_worker_death(box, pid),
    )
    pool.start()
    _wait_for_workers(started, stop.event)
    runner: JobRunner | None = None
    relay: OutboxRelay | None = None
    ready: Path | None = None
    if not stop.event.is_set():
        handlers = {k: v for batch in box.hook.dicombox_jobs(box=box) for k, v in batch.items()}
        runner = JobRunner(box.jobs, handlers, box.bus)
        # Route jobs written with their instances become jobs as each is announced
        # (and those a stop or a crash left, at once).
        relay = OutboxRelay(box.index.engine, on_jobs=runner.wake)
        box.bus.subscribe("instance.stored", relay.wake)
        relay.start()
        runner.start()
        box.hook.dicombox_start(box=box)
        tls_port = config.network.tls_port if tls_listener is not None else 0
        box.bus.publish("application.started", user=os_user(), port=port, workers=workers)
        ready = _write_ready(box, port, workers, tls_port)
        enabled = ", ".join(i.name for i in infos if i.enabled)
        log.info(
            "ready: %s listening on port %d%s with %d network worker(s); data in %s; plugins: %s",
            config.box.ae_title,
            port,
            f" and TLS port {tls_port}" if tls_port else "",
            workers,
            config.data_dir.resolve(),
            enabled,
        )
        notify(f"READY=1\nSTATUS=accepting associations as {config.box.ae_title} on port {port}")
        stop.serving = True
        interval = watchdog_interval_s()
        while not stop.event.wait(interval or 3600):
            if interval:
                notify("WATCHDOG=1")

    log.info("stopping: no new associations; letting those in flight finish")
    notify("STOPPING=1")
    listener.close()
    if tls_listener is not None:
        tls_listener.close()
    pool.stop(timeout=config.network.dimse_timeout_s * 2 + 5)
    if relay is not None:  # after the workers: the last instances' route jobs too
        relay.stop()
    if runner is not None:  # what start-up had got to
        runner.stop()
        box.hook.dicombox_stop(box=box)
    channel.close()
    if ready is not None:
        box.bus.publish("application.stopped", user=os_user())
        ready.unlink(missing_ok=True)
    if unindexed:
        log.error("%d stored file(s) still not indexed: the next start checks again", unindexed)
    else:
        mark_clean(box.run_dir)
    box.close()
    log.info("stopped")
    return 0
