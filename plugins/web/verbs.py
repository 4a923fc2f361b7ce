"""The console's actions are the plugins' own CLI verbs, run in the supervisor.

Plugins never import each other, and each one already offers what an operator may do
through the ``dicombox_cli`` hook (``dicombox burn``, ``print``, ``send``, ``export
usb``, ``worklist refresh``): the console builds the same parser and calls the same
functions with the running box. So a burn from the console is exactly ``dicombox
burn``: the same checks, the same job, the same messages.

A verb writes to standard output and error; while it runs, those writes go to a
buffer of its own thread (other threads still write to the real streams), and the
last line written is the verb's progress.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from dicombox.core.box import Box
from dicombox.core.jobs import PROBLEMS_EXIT, PermanentJobError

CONSOLE_JOB = "console"  # the job kind of a verb run in the background
PROGRESS_EVERY_S = 0.5  # a verb that prints a line per image must not write a row each


class _Sink(io.TextIOBase):
    """What one verb writes, with its last line reported as progress."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.text = io.StringIO()
        self.stderr_text = io.StringIO()  # what went to standard error, also in ``text``
        self.progress = progress
        self._line = ""
        self._reported = 0.0

    def write(self, text: str) -> int:
        self.text.write(text)
        if self.progress is not None:
            # Progress is written as "\r12/40 sent": the text after the last \r or \n.
            parts = re.split(r"[\r\n]", self._line + text)
            self._line = parts[-1]
            done = [p.strip() for p in parts[:-1] if p.strip()]
            latest = self._line.strip() or (done[-1] if done else "")
            now = time.monotonic()
            if latest and now - self._reported >= PROGRESS_EVERY_S:
                self._reported = now
                self.progress(latest)
        return len(text)


class _ThreadStreams(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr: a thread running a verb writes to its
    sink, every other thread to the real stream."""

    def __init__(self, real: TextIO, local: threading.local, stderr: bool = False) -> None:
        self.real = real
        self.local = local
        self.stderr = stderr  # standing in for sys.stderr

    def write(self, text: str) -> int:
        sink = getattr(self.local, "sink", None)
        if sink is not None and self.stderr:
            sink.stderr_text.write(text)
        return (sink or self.real).write(text)

    def flush(self) -> None:
        if getattr(self.local, "sink", None) is None:
            self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def isatty(self) -> bool:
        return False


_local = threading.local()
_install_lock = threading.Lock()


def install_streams() -> None:
    """Route verbs' output to their sinks from now on (idempotent)."""
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStreams):
            sys.stdout = _ThreadStreams(sys.stdout, _local)
        if not isinstance(sys.stderr, _ThreadStreams):
            sys.stderr = _ThreadStreams(sys.stderr, _local, stderr=True)


def uninstall_streams() -> None:
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _ThreadStreams):
                setattr(sys, name, stream.real)


@dataclass(frozen=True)
class VerbResult:
    code: int
    output: str
    errors: str = ""  # the part of ``output`` written to standard error

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def message(self) -> str:
        """What the verb said, its progress lines (\\r) reduced to the last, worded for
        the console (``for_console``)."""
        lines = [re.split(r"\r", line)[-1].strip() for line in self.output.splitlines()]
        return for_console("\n".join(line for line in lines if line)) or f"exit status {self.code}"

    @property
    def problems(self) -> list[str]:
        """A verb that finished with problems (exit ``PROBLEMS_EXIT``) wrote each to
        standard error, one line each."""
        return [line.strip() for line in self.errors.splitlines() if line.strip()]

    @property
    def job(self) -> int | None:
        """The job the verb queued, as its message names it ("… as job 12")."""
        found = re.search(r"\bjob (\d+)\b", self.output)
        return int(found[1]) if found else None


# A verb speaks to someone at a shell; the console's operator has no shell. An error's
# "dicombox burn: " names a command they did not type, and a hint to run one is replaced
# by where the console shows the same thing.
COMMAND_PREFIX = re.compile(r"^dicombox [a-z][a-z -]*?: ", re.MULTILINE)
SHELL_HINTS = (("follow it with 'dicombox jobs'", "follow it on the Jobs page"),)


def for_console(text: str) -> str:
    """A verb's words as the console shows them: no command line in them."""
    text = COMMAND_PREFIX.sub("", text)
    for hint, instead in SHELL_HINTS:
        text = text.replace(hint, instead)
    return text


def unavailable(verb: str) -> str:
    return (
        f"this box does not offer {verb!r}: the plugin that does it is not enabled "
        "(ask the box's administrator)"
    )


class VerbError(ValueError):
    """A verb the box does not have (its plugin is disabled) or bad arguments."""


class Verbs:
    """The plugins' verbs, parsed as ``dicombox`` parses them, run with ``box``."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self._parser: argparse.ArgumentParser | None = None
        self._lock = threading.Lock()

    def _build(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="dicombox", exit_on_error=False, add_help=False)
        sub = parser.add_subparsers(dest="verb")
        self.box.hook.dicombox_cli(subparsers=sub)
        return parser

    def available(self, verb: str) -> bool:
        with self._lock:
            if self._parser is None:
                self._parser = self._build()
            parser = self._parser
        verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return any(verb in a.choices for a in verbs)

    def run(self, argv: list[str], progress: Callable[[str], None] | None = None) -> VerbResult:
        """Run ``dicombox ARGV…`` in this thread with this box; never raises for what the
        verb reports (a non-zero code and its message)."""
        if not self.available(argv[0]):
            raise VerbError(unavailable(argv[0]))
        install_streams()
        sink = _Sink(progress)
        _local.sink = sink
        try:
            with self._lock:
                assert self._parser is not None
                args = self._parser.parse_args(argv)
            code = int(args.func(self.box, args) or 0)
        except SystemExit as exc:  # argparse's way of refusing arguments
            code = exc.code if isinstance(exc.code, int) else 2
        except argparse.ArgumentError as exc:
            raise VerbError(str(exc)) from None
        finally:
            _local.sink = None
        return VerbResult(code, sink.text.getvalue(), sink.stderr_text.getvalue())


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a table printed by ``dicombox.core.tables.format_table`` (columns padded to
    their widest cell, two spaces apart), as {header: cell}; [] when there is none."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or "  " not in lines[0]:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def console_job(verbs: Verbs) -> Callable[[Any, Callable[[str], None]], list[str] | None]:
    """The handler of ``console`` jobs: a verb that takes a while (a send, an export to a
    stick), run in the background so that it shows on the jobs page with its progress.
    A verb that finished with problems (an export that left images out) makes the job
    "done with problems", its problems the lines the verb wrote to standard error."""

    def run(job: Any, progress: Callable[[str], None]) -> list[str] | None:
        result = verbs.run(list(job.payload["argv"]), progress)
        last = result.message.splitlines()[-1]
        if result.code == PROBLEMS_EXIT:
            progress(last)
            return result.problems or [last]
        if not result.ok:
            # The operator sees why and may retry it from the jobs page.
            raise PermanentJobError(last)
        progress(last)
        return None

    return run
