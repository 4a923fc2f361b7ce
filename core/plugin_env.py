"""Plugin environments: the folders field-installed plugins live in, and which one runs.

Layout under ``<data_dir>/plugins/``::

    envs/0/               the empty environment: built-in plugins only
    envs/<n>/             one per installed bundle: its wheels installed by pip with
                          ``--target``, plus bundle.json (the bundle's signed manifest)
    current -> envs/<n>   the environment the box starts with (a relative symlink)
    previous -> envs/<m>  the one before it, for ``dicombox plugins rollback``
    lock                  one install or rollback at a time

A symlink is switched by making a new one under a temporary name and renaming it over
the old (``os.replace``): a box starting at any moment sees the old environment or the
new one, never a half-written one.

The box resolves ``current`` once, when ``dicombox`` starts, and passes the resolved
folder to its network workers in ``$DICOMBOX_PLUGIN_ENV`` (they inherit it). So a worker
that is restarted after a crash loads the same plugins as its supervisor, even when
``current`` has been switched meanwhile: a running box changes plugins only by restarting.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from dicombox.core.config import BoxSection

ENV_VAR = "DICOMBOX_PLUGIN_ENV"
BUNDLE_RECORD = "bundle.json"
BUILT_IN_ONLY = "built-in plugins only"
KEEP_ENVS = 3  # installed environments kept besides current and previous


class EnvError(RuntimeError):
    """An environment could not be made or switched; the message says why."""


# --- which environment this process runs ------------------------------------------------


def pin(data_dir: Path) -> Path | None:
    """Resolve ``<data_dir>/plugins/current`` for this process and the processes it
    starts (``$DICOMBOX_PLUGIN_ENV``); None when no bundle was ever installed."""
    env = EnvStore(data_dir).current()
    os.environ[ENV_VAR] = str(env) if env else ""
    return env


def pinned() -> Path | None:
    """The environment this process was started with (see ``pin``), if any."""
    value = os.environ.get(ENV_VAR, "")
    return Path(value) if value else None


def data_dir_from_args(argv: list[str]) -> Path:
    """The data folder a ``dicombox`` command line means, read before plugins load (they
    decide which verbs exist): ``--data-dir``, else ``[box] data_dir`` of ``--config``
    (or ``$DICOMBOX_CONFIG``), else the default. The options count before the verb and
    after it, as for the parser (which gives every verb both); the last one given wins."""
    config = os.environ.get("DICOMBOX_CONFIG")
    data_dir: str | None = None
    i = 0
    while i < len(argv):
        token = argv[i]
        name, _, inline = token.partition("=")
        if name in ("--config", "-c", "--data-dir"):
            value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if inline else 2
            if name == "--data-dir":
                data_dir = value
            else:
                config = value
        elif token.startswith("-c") and len(token) > 2 and not token.startswith("--"):
            config, i = token[2:], i + 1
        elif token == "--":
            break  # what follows is only positional arguments
        else:
            i += 1
    if data_dir:
        return Path(data_dir)
    if config:
        try:
            box = tomllib.loads(Path(config).read_text(encoding="utf-8")).get("box", {})
            if isinstance(box, dict) and isinstance(box.get("data_dir"), str):
                return Path(box["data_dir"])
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            pass  # the configuration is checked, and its errors told, in a moment
    return Path(BoxSection.data_dir)


def label(env: Path | None) -> str:
    """What an environment holds, for people: the bundle's name and version."""
    if env is None:
        return BUILT_IN_ONLY
    try:
        record = json.loads((env / BUNDLE_RECORD).read_text(encoding="utf-8"))
        return f"{record['name']} {record['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        return BUILT_IN_ONLY if env.name == "0" else f"environment {env.name}"


def is_inside(dist: Distribution, env: Path) -> bool:
    """Was ``dist`` installed into the environment ``env``?"""
    try:
        where = Path(str(dist.locate_file(""))).resolve()
    except (OSError, NotImplementedError):
        return False
    return where == env.resolve() or where.is_relative_to(env.resolve())


def installed_outside(name: str, root: Path) -> str | None:
    """The version of distribution ``name`` when the box's own installation (not a plugin
    environment under ``root``) has it; a bundle may add packages, never replace those."""
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return None
    return None if is_inside(dist, root) else dist.version


# --- the environments on disk -----------------------------------------------------------


class EnvStore:
    """The plugin environments of one data folder and the two links between them."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "plugins"
        self.envs = self.root / "envs"
        self.current_link = self.root / "current"
        self.previous_link = self.root / "previous"

    @staticmethod
    def _target(link: Path) -> Path | None:
        if not link.is_symlink():
            return None
        target = link.resolve()
        return target if target.is_dir() else None

    def current(self) -> Path | None:
        return self._target(self.current_link)

    def previous(self) -> Path | None:
        return self._target(self.previous_link)

    def built_in_only(self) -> Path:
        """The empty environment (a real folder, so "no bundle" can be switched back to)."""
        env = self.envs / "0"
        env.mkdir(parents=True, exist_ok=True)
        return env

    def new_env(self) -> Path:
        self.envs.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name) for p in self.envs.iterdir() if p.name.isdigit()]
        env = self.envs / str(max(numbers, default=0) + 1)
        env.mkdir()
        return env

    def install(self, env: Path, wheels: list[Path], record: bytes) -> None:
        """pip installs ``wheels`` into ``env`` offline: no index, no dependencies
        fetched, nothing read from pip's user configuration or environment."""
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--isolated",
            "--disable-pip-version-check",
            "--no-input",
            "install",
            "--no-index",
            "--no-deps",
            "--target",
            str(env),
            *[str(w) for w in wheels],
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise EnvError(f"pip could not install the wheels: {' '.join(lines[-3:])}")
        (env / BUNDLE_RECORD).write_bytes(record)

    def _link(self, link: Path, target: Path) -> None:
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        # Relative, so the data folder can be moved or mounted elsewhere.
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)

    def switch(self, current: Path, previous: Path | None) -> None:
        """Point ``current`` (and ``previous``) at these environments, each atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        if previous is not None:
            self._link(self.previous_link, previous)
        else:
            self.previous_link.unlink(missing_ok=True)
        self._link(self.current_link, current)

    def prune(self, keep: int = KEEP_ENVS) -> list[Path]:
        """Remove old environments: current, previous and the ``keep`` newest stay."""
        if not self.envs.is_dir():
            return []
        linked = {p for p in (self.current(), self.previous()) if p is not None}
        numbered = sorted(
            (p for p in self.envs.iterdir() if p.name.isdigit() and p.name != "0"),
            key=lambda p: int(p.name),
        )
        gone = [p for p in numbered[:-keep] if p.resolve() not in linked] if keep else []
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        return gone

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One install or rollback at a time on this data folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EnvError("another plugin install or rollback is running") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
