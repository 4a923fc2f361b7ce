"""Web: the operator's console and the box's REST API, on one HTTP(S) server.

The server runs in the supervisor, on a thread of its own (``dicombox_start``), never in
the network workers: a page view costs a DICOM association nothing. It reads the core
(index, jobs, audit trail, configuration) directly; what the other plugins do (burn,
print, send, export, worklist) it asks of them through hooks: their CLI verbs, their
front-panel screens and their status lines. Accounts are local, in the index database
(``dicombox web user add``); there is no default password.
"""

from __future__ import annotations

import argparse
import logging

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.jobs import JobHandler
from dicombox.plugins.web.cli import add_verb
from dicombox.plugins.web.server import WebServer, running_url
from dicombox.plugins.web.settings import WebSection
from dicombox.plugins.web.verbs import CONSOLE_JOB, Verbs, console_job, uninstall_streams

__version__ = "1.0.0"
log = logging.getLogger("dicombox.web")

# The console of each running box (one per supervisor; keyed so tests may run several).
_running: dict[int, WebServer] = {}


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"web": WebSection}


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    add_verb(subparsers)


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    return {CONSOLE_JOB: console_job(Verbs(box))}


@hookimpl
def dicombox_start(box: Box) -> None:
    settings: WebSection = box.section("web")
    if settings.address() is None:
        log.info('web console off ([web] listen = "")')
        return
    # Imported here: a box with the console off never loads the web framework.
    from dicombox.plugins.web.app import create_app
    from dicombox.plugins.web.console import Console

    try:
        console = Console.of(box, settings)
        server = WebServer(console, create_app(console))
        if server.start():
            _running[id(box)] = server
    except Exception:  # the box serves DICOM without its console rather than not at all
        log.exception("web console could not start; the box runs on without it")


@hookimpl
def dicombox_stop(box: Box) -> None:
    server = _running.pop(id(box), None)
    if server is not None:
        server.stop()
    if not _running:
        uninstall_streams()


@hookimpl
def dicombox_status(box: Box) -> list[str]:
    url = running_url(box.run_dir)
    return [f"web console: {url}"] if url else []
