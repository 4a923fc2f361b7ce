"""What an operator can do from the console or the API: burn, print, send, export to a
USB stick, refresh the worklist. Each is the owning plugin's CLI verb (see ``verbs``):
burn and print queue their own jobs at once; a send or an export takes as long as the
study is big, so it runs as a ``console`` job that shows its progress on the jobs page.
Every action is logged and announced on the bus as ``web.action`` with who did it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dicombox.plugins.web.console import Console
from dicombox.plugins.web.search import study_row
from dicombox.plugins.web.verbs import CONSOLE_JOB, VerbError, unavailable

log = logging.getLogger("dicombox.web")


class ActionError(ValueError):
    """The action cannot be done as asked; the message tells the operator why."""


@dataclass(frozen=True)
class Outcome:
    message: str
    job: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"ok": True, "message": self.message, "job": self.job}


def _studies(console: Console, studies: list[str]) -> list[str]:
    if not studies:
        raise ActionError("name at least one study")
    unknown = [uid for uid in studies if study_row(console.box, uid) is None]
    if unknown:
        raise ActionError(f"no study {unknown[0]} is stored")
    return studies


def _run(console: Console, user: str, argv: list[str]) -> Outcome:
    """A verb that answers at once (it queues its own job, or polls and is done)."""
    try:
        result = console.verbs.run(argv)
    except VerbError as exc:
        raise ActionError(str(exc)) from None
    _announce(console, user, argv, result.job, result.ok)
    if not result.ok:
        raise ActionError(result.message)
    return Outcome(result.message, result.job)


def _background(console: Console, user: str, argv: list[str], label: str) -> Outcome:
    """A verb that takes a while, as a job of its own."""
    if not console.verbs.available(argv[0]):
        raise ActionError(unavailable(argv[0]))
    job = console.box.jobs.enqueue(
        CONSOLE_JOB,
        {"argv": argv, "label": label, "user": user},
        queue=f"{CONSOLE_JOB}:{argv[0]}",
        max_attempts=1,  # the operator sees the failure and may retry it
    )
    _announce(console, user, argv, job, True)
    return Outcome(f"{label}: queued as job {job}", job)


def _announce(console: Console, user: str, argv: list[str], job: int | None, ok: bool) -> None:
    log.info("console: %s ran '%s' (%s)", user, " ".join(argv), "ok" if ok else "refused")
    console.box.bus.publish("web.action", user=user, command=argv, job=job, ok=ok)


def burn(console: Console, user: str, studies: list[str], copies: int = 0) -> Outcome:
    argv = ["burn", *_studies(console, studies)]
    if copies:
        argv += ["--copies", str(copies)]
    return _run(console, user, argv)


def print_films(
    console: Console, user: str, uids: list[str], printer: str = "", layout: str = ""
) -> Outcome:
    if not uids:
        raise ActionError("name at least one study, series or image")
    argv = ["print", *uids]
    if printer:
        argv += ["--printer", printer]
    if layout:
        argv += ["--layout", layout]
    return _run(console, user, argv)


def send(console: Console, user: str, remote: str, studies: list[str]) -> Outcome:
    if console.box.config.remote_named(remote) is None:
        known = ", ".join(r.name for r in console.box.config.remote) or "(none configured)"
        raise ActionError(f"{remote!r} is no [[remote]] of this box (known: {known})")
    label = f"send to {remote}: {_what(console, _studies(console, studies))}"
    return _background(console, user, ["send", remote, *studies], label)


def export_usb(console: Console, user: str, studies: list[str], stick: str = "") -> Outcome:
    argv = ["export", "usb", *_studies(console, studies)]
    if stick:
        argv += ["--stick", stick]
    label = f"export to USB{f' {stick}' if stick else ''}: {_what(console, studies)}"
    return _background(console, user, argv, label)


def refresh_worklist(console: Console, user: str) -> Outcome:
    return _run(console, user, ["worklist", "refresh"])


def _what(console: Console, studies: list[str]) -> str:
    """A job's label: the patient of the first study, and how many studies."""
    row = study_row(console.box, studies[0]) or {}
    patient = str(row.get("patient_name") or "?").replace("^", " ").strip()
    return patient + (f" and {len(studies) - 1} more" if len(studies) > 1 else "")
