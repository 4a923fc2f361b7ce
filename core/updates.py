"""Field updates of the box's plugins: installing a verified bundle into a new plugin
environment, trying it, switching to it, restarting the box onto it and checking its
health, and rolling back by itself when any step fails (see ``plugin_env`` for the
environments themselves, ``bundles`` for the bundle format)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicombox.core.config import Config
from dicombox.core.plugin_env import EnvError, EnvStore, installed_outside, label


class UpdateRefused(RuntimeError):
    """An install or rollback that did not happen (or was undone): ``reason`` says why,
    ``outcome`` in what state it left the box."""

    def __init__(self, reason: str, outcome: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome


@dataclass(frozen=True)
class Site:
    """The box an install acts on: its configuration and the file it came from (passed
    on to the trial run and to any restart)."""

    config: Config
    config_path: str | None

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir


Say = Callable[[str], None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        # A child that exited but was not waited for yet still has a pid: a zombie.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def running(data_dir: Path) -> dict[str, Any] | None:
    """The running box's ready.json (pid, port, AE title, start time), or None."""
    try:
        info = json.loads((data_dir / "run" / "ready.json").read_text())
        return info if _alive(int(info["pid"])) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cli(site: Site, data_dir: Path, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "dicombox.core.cli"]
    if site.config_path:
        cmd += ["--config", site.config_path]
    return [*cmd, "--data-dir", str(data_dir), *args]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _health_host(bind: str) -> str:
    return {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def echo(config: Config, host: str, port: int, called_ae: str) -> None:
    """C-ECHO the box; UpdateRefused unless it answers Success."""
    from pynetdicom.sop_class import Verification  # only here: pynetdicom is heavy

    from dicombox.core.net.requestor import requestor_ae

    ae = requestor_ae(config, config.updates.health_calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        how = "rejected the association" if assoc.is_rejected else "did not answer"
        raise UpdateRefused(f"C-ECHO to {called_ae}@{host}:{port}: the box {how}")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code != 0x0000:
        raise UpdateRefused(f"C-ECHO to {called_ae}@{host}:{port}: status {code!r}")


def wait_ready(
    data_dir: Path,
    after: float,
    timeout: float,
    proc: subprocess.Popen | None = None,
    pid: int | None = None,
) -> dict[str, Any]:
    """ready.json of a box that started after ``after``; fails early when the process
    (``proc``, or the box restarting in place as ``pid``) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running(data_dir)
        if info and float(info.get("started", 0)) > after:
            return info
        if proc is not None and proc.poll() is not None:
            raise UpdateRefused(f"the box exited with code {proc.returncode} while starting")
        if pid is not None and not _alive(pid):
            raise UpdateRefused("the box exited while starting")
        time.sleep(0.1)
    raise UpdateRefused(f"the box was not ready within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# The trial box has the site's AE title and its [plugins] list, all else default: a trial
# must not open the serial port, printers or worklist schedule the running box holds.
def _trial_config(config: Config) -> str:
    return (
        f'[box]\nae_title = {json.dumps(config.box.ae_title)}\nbind = "127.0.0.1"\n'
        f"[plugins]\ndisabled = {json.dumps(config.plugins.disabled)}\n"
    )


def trial(site: Site, env: Path, bundle: str, plugins: list[str]) -> None:
    """Run the box with ``env`` next to the real one, which it never touches: the site's
    configuration must load with every plugin of the bundle, and a box on a scratch data
    folder must start and answer C-ECHO."""
    # A short path: the trial box makes a Unix socket in it, and those are 107 bytes at most.
    scratch = Path(tempfile.mkdtemp(prefix="dicombox-trial-"))
    (scratch / "plugins").mkdir()
    os.symlink(env.resolve(), scratch / "plugins" / "current")
    try:
        _trial_load(site, scratch, bundle, plugins)
        _trial_serve(site, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _trial_load(site: Site, scratch: Path, bundle: str, plugins: list[str]) -> None:
    timeout = site.config.updates.health_timeout_s
    try:
        done = subprocess.run(
            _cli(site, scratch, "plugins", "--json"),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise UpdateRefused(f"loading the new plugins took over {timeout:.0f} s") from None
    if done.returncode != 0:
        why = _last_line(done.stderr or done.stdout)
        raise UpdateRefused(f"the box does not start with the new plugins: {why}")
    try:
        infos = {i["name"]: i for i in json.loads(done.stdout)}
    except (ValueError, KeyError, TypeError):  # a plugin that prints while it loads, say
        raise UpdateRefused(f"unreadable plugin list: {_last_line(done.stdout)}") from None
    for name in plugins:
        info = infos.get(name)
        if info is None:
            raise UpdateRefused(f"plugin {name} is not found once installed")
        if info["error"]:
            raise UpdateRefused(f"plugin {name} failed to load: {info['error']}")
        if info["enabled"] and info["source"] != f"bundle {bundle}":
            raise UpdateRefused(f"plugin {name} loads from {info['source']}, not the bundle")


def _trial_serve(site: Site, scratch: Path) -> None:
    config_file = scratch / "trial.toml"
    config_file.write_text(_trial_config(site.config), encoding="utf-8")
    log_file = scratch / "serve.log"
    cmd = [sys.executable, "-m", "dicombox.core.cli", "--config", str(config_file)]
    cmd += ["--data-dir", str(scratch), "serve", "--port", "0", "--workers", "1"]
    # Not systemd's business: the trial must not tell a unit it is ready or alive.
    quiet = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    with log_file.open("wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        info = wait_ready(scratch, 0.0, site.config.updates.health_timeout_s, proc=proc)
        echo(site.config, "127.0.0.1", int(info["port"]), str(info["ae_title"]))
    except UpdateRefused as exc:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        detail = f" ({' / '.join(tail)})" if tail else ""
        raise UpdateRefused(f"a trial box with the new plugins failed: {exc}{detail}") from None
    finally:
        _stop(proc)


@dataclass(frozen=True)
class BoxProcess:
    """How the running box was started (from /proc), to start it again should it die
    while restarting onto new plugins."""

    pid: int
    argv: list[str]
    cwd: str
    environ: dict[str, str]
    stdout: str

    @classmethod
    def of(cls, pid: int) -> BoxProcess | None:
        proc = Path(f"/proc/{pid}")
        try:
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            environ = dict(
                item.decode(errors="replace").partition("=")[::2]
                for item in (proc / "environ").read_bytes().split(b"\0")
                if item
            )
            return cls(pid, argv, os.readlink(proc / "cwd"), environ, os.readlink(proc / "fd/1"))
        except (OSError, UnicodeDecodeError):
            return None

    def relaunch(self, data_dir: Path) -> None:
        """Start the box again as it was started, detached from this command."""
        out = Path(self.stdout)
        log = out if out.is_absolute() and out.is_file() else data_dir / "run" / "serve.log"
        with log.open("ab") as handle:
            subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                start_new_session=True,
            )


def _terminate(pid: int, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if ``pid`` is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _alive(pid):
            return
        try:
            os.kill(pid, sig)
        except OSError:
            return
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def restart(site: Site, info: dict[str, Any] | None, proc: BoxProcess | None) -> float:
    """Restart the box; returns the time before, to tell its new ready.json from the old.

    ``[updates] restart_command`` when set (``systemctl restart dicombox``); otherwise
    SIGUSR2, on which ``dicombox serve`` stops as on SIGTERM and starts itself again in
    the same process; a box that is gone is started again as it was started before."""
    before = time.time()
    command = site.config.updates.restart_command
    if command:
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=site.config.updates.health_timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpdateRefused(f"{' '.join(command)} failed: {exc}") from None
        if done.returncode != 0:
            why = _last_line(done.stderr or done.stdout)
            raise UpdateRefused(f"{' '.join(command)} failed: {why}")
    elif info is not None and _alive(int(info["pid"])):
        try:
            os.kill(int(info["pid"]), signal.SIGUSR2)
        except PermissionError:
            raise UpdateRefused(
                f"not allowed to signal the box (pid {info['pid']}): run this as the box's "
                "user, or set [updates] restart_command"
            ) from None
    elif proc is not None and "NOTIFY_SOCKET" not in proc.environ:
        _terminate(proc.pid)  # one that hangs while starting goes first: one box per folder
        proc.relaunch(site.data_dir)
    else:
        raise UpdateRefused(
            "the box is not running and cannot be started from here: start it again "
            "(under systemd, set [updates] restart_command)"
        )
    return before


def restart_and_check(
    site: Site, info: dict[str, Any] | None, proc: BoxProcess | None
) -> dict[str, Any]:
    """Restart the box and check its health: up again, and answering C-ECHO."""
    before = restart(site, info, proc)
    in_place = not site.config.updates.restart_command and info is not None
    pid = int(info["pid"]) if in_place and info is not None else None
    new = wait_ready(site.data_dir, before, site.config.updates.health_timeout_s, pid=pid)
    echo(site.config, _health_host(site.config.box.bind), int(new["port"]), str(new["ae_title"]))
    return new


def switch_to(site: Site, store: EnvStore, env: Path, say: Say) -> None:
    """Make ``env`` current and restart a running box onto it; if the box then fails its
    health check, switch back, restart it again and raise UpdateRefused."""
    old = store.current() or store.built_in_only()
    old_previous = store.previous()
    info = running(site.data_dir)
    proc = BoxProcess.of(int(info["pid"])) if info else None
    store.switch(env, old)
    if info is None:
        say(f"now on {label(env)}; the box is not running: it starts with these plugins")
        return
    say(f"restarting the box (pid {info['pid']}) on {label(env)}")
    try:
        new = restart_and_check(site, info, proc)
    except UpdateRefused as exc:
        store.switch(old, old_previous)
        reason = f"the box failed its health check on {label(env)}: {exc.reason}"
        try:
            back = restart_and_check(site, running(site.data_dir), proc)
        except UpdateRefused as again:
            outcome = f"rolled back to {label(old)}, but the box did not come back: {again.reason}"
            raise UpdateRefused(reason, outcome) from None
        raise UpdateRefused(
            reason,
            f"rolled back to {label(old)}: the box answers C-ECHO again on port {back['port']}",
        ) from None
    say(f"the box runs on {label(env)} and answers C-ECHO on port {new['port']}")


def install(site: Site, bundle: Path, say: Say) -> None:
    """Verify ``bundle``, install it into a new environment, try it, switch to it."""
    # Here, not at the top: every box process imports this module, few ever check a bundle.
    from dicombox.core.bundles import BundleError, check_bundle

    store = EnvStore(site.data_dir)
    unchanged = f"nothing was switched: the box runs on {label(store.current())}, as before"
    with store.lock():
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=store.root))
        env: Path | None = None
        try:
            try:
                manifest = check_bundle(bundle, site.config.updates.trusted_keys, incoming)
            except BundleError as exc:
                raise UpdateRefused(str(exc), unchanged) from None
            say(
                f"{bundle.name}: {manifest.label}, signature and "
                f"{len(manifest.wheels)} wheel(s) verified"
            )
            for wheel in manifest.wheels:
                if version := installed_outside(wheel.distribution, store.root):
                    raise UpdateRefused(
                        f"{wheel.file}: {wheel.distribution} {version} is part of the box's own "
                        "installation; a bundle adds plugins, it does not replace the box",
                        unchanged,
                    )
            env = store.new_env()
            wheels = [incoming / w.file for w in manifest.wheels]
            store.install(env, wheels, manifest.to_bytes())
            trial(site, env, manifest.label, [p.name for p in manifest.plugins])
            say(f"trial run passed: {', '.join(p.name for p in manifest.plugins)} loaded")
            switch_to(site, store, env, say)
        except EnvError as exc:
            raise UpdateRefused(str(exc), unchanged) from None
        except UpdateRefused as exc:
            exc.outcome = exc.outcome or unchanged
            raise
        else:
            env = None  # installed: keep it
            for gone in store.prune():
                say(f"removed old plugin environment {gone.name}")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
            if env is not None and env != store.current():
                shutil.rmtree(env, ignore_errors=True)


def rollback(site: Site, say: Say) -> None:
    """Switch back to the previous environment (and restart a running box onto it)."""
    store = EnvStore(site.data_dir)
    with store.lock():
        target = store.previous()
        if target is None:
            raise UpdateRefused(
                "there is no previous plugin environment to go back to",
                f"the box runs on {label(store.current())}, as before",
            )
        switch_to(site, store, target, say)
