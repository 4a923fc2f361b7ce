"""The plugin contract: every hook a dicombox plugin may implement.

A plugin is a module (or object) registered under the ``dicombox`` entry-point group; it
implements any of these hooks with ``@dicombox.core.hookimpl``. Hooks receive the ``Box``
(the host's services: config, store, index, jobs, events) and nothing global. A plugin
never imports another plugin: plugins talk through hooks and the box's events.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from dicombox.core.box import Box
    from dicombox.core.coercion import Coercion
    from dicombox.core.jobs import JobHandler
    from dicombox.core.net.service import Service
    from dicombox.core.outbox import RouteJob

PROJECT = "dicombox"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def dicombox_config_sections() -> dict[str, type]:
    """Configuration sections this plugin owns: ``{"worklist": WorklistSection}``.

    Each is a dataclass whose fields all have defaults; the core validates the TOML table
    against it and hands the instance back as ``box.config.extra[name]``."""


@hookspec
def dicombox_services(box: Box) -> list[Service]:
    """DICOM services this plugin provides as association acceptor (SCP), with the
    presentation contexts they accept and a handler per DIMSE command."""


@hookspec
def dicombox_local_ae_titles(box: Box) -> list[str]:
    """Extra called AE titles this plugin answers on (e.g. a separate worklist AE)."""


@hookspec
def dicombox_route_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    """The jobs this plugin's routes ask for an arriving instance (forward it, burn its
    study …), as ``dicombox.core.outbox.RouteJob``s: each adds the instance's items to
    the still-queued job of its kind, queue and group, or queues one. Asked in the
    network worker once the file is durable (``instance.path``), before its index row is
    written: the jobs are written in the same transaction as that row (the outbox), so
    an acknowledged instance never lacks them, and the supervisor queues them at once.
    ``instance`` is a ``StoredInstance``; ``dataset`` holds the header elements the index
    keeps (the UIDs, the patient, study, series and instance keys; pydicom converts them
    lazily); for anything else, read the file. Be quick: this runs for every instance
    before it is answered. An exception refuses the instance (0110): it is not stored
    without its routes."""


@hookspec
def dicombox_on_stored(box: Box, instance: Any, dataset: Any) -> None:
    """An instance was stored durably and indexed (a ``StoredInstance``), and is about to
    be answered; ``dataset`` as for ``dicombox_route_jobs``. Runs in the network worker
    that stored it: do not do slow work. Not for routes: a process killed here has
    indexed the instance without running this, so queue route jobs through
    ``dicombox_route_jobs``. An exception here is logged; the instance is stored."""


@hookspec
def dicombox_coerce(box: Box, dataset: Any, context: dict[str, Any]) -> Coercion | None:
    """Should an arriving instance be corrected before it is stored (worklist coercion)?
    ``dataset`` is its header as for ``dicombox_on_stored``; ``context`` holds
    ``calling_ae``. Return a ``dicombox.core.coercion.Coercion`` (new values and the
    reason) or None. Runs in the network worker for every instance: be quick. The core
    rewrites the file, keeps the old values in Original Attributes Sequence and audits
    the change."""


@hookspec
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    """Job kinds this plugin executes: ``{"forward": handler}``; run by the supervisor.
    A handler that finishes with problems (some of the work could not be done) returns
    them, one line each: the job ends "done with problems" instead of "done"."""


@hookspec
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add this plugin's CLI verbs (``dicombox burn``, ``dicombox print`` …). Each parser
    sets ``func=callable(box, args) -> int``."""


class HalDriver(Protocol):
    """A hardware driver as ``dicombox_hal_drivers`` returns it: an entry made by its
    family's registry in ``dicombox.hal`` (``BURNERS.entry(name, factory, Options)``)."""

    @property
    def family(self) -> str: ...

    @property
    def name(self) -> str: ...

    def register(self) -> None: ...


@hookspec
def dicombox_hal_drivers() -> list[HalDriver]:
    """Hardware drivers this plugin contributes, one entry each, made by the registry of
    the device family in ``dicombox.hal``::

        return [BURNERS.entry("rimage", open_rimage, RimageOptions)]

    ``open_rimage(options, context)`` opens the device; ``RimageOptions`` is a dataclass
    whose fields are the configuration keys the driver reads from the section that
    chooses it (``[media] burner = "rimage"``, its keys in ``[media]``). The host
    registers every entry when it starts, before it reads the configuration, so the
    configuration knows the driver's name and keys. Called once per process, with no box."""


@hookspec
def dicombox_status(box: Box) -> list[str]:
    """Short status lines for the front panel and ``dicombox status``."""


@hookspec
def dicombox_conformance(box: Box) -> list[dict[str, Any]]:
    """This plugin's rows of the conformance statement: ``{"service", "sop_class",
    "uid", "role", "transfer_syntaxes", "notes"}``."""


@hookspec(firstresult=True)
def dicombox_render_image(box: Box, dataset: Any, frame: int) -> Any:
    """One frame of ``dataset`` (a whole data set, pixels included) as pixels a screen
    can show: a numpy ``uint8`` array, grey ``(rows, columns)`` or RGB ``(rows,
    columns, 3)``, windowed as this plugin would print it. The first plugin that
    answers is used; return None to leave it to another. The web console's thumbnails
    and series previews come from here."""


@hookspec
def dicombox_start(box: Box) -> None:
    """The supervisor has started (schedules, devices). Runs once, not in workers."""


@hookspec
def dicombox_stop(box: Box) -> None:
    """The supervisor is stopping: release devices, finish or park work."""


@dataclass(frozen=True)
class PanelScreen:
    """A status screen of the front panel, shown in turn with the others.

    ``render(columns, rows)`` returns up to ``rows`` lines; longer lines are cut at
    ``columns``. An empty list means "nothing to say now": the screen is skipped. It
    runs on the panel's own thread, about once a second while the screen is shown, so
    keep it quick and cache anything slow. ``order`` places it (lower first; the
    panel's own screens use 0-49)."""

    name: str
    render: Callable[[int, int], list[str]]
    order: int = 100


@dataclass(frozen=True)
class PanelAction:
    """An entry of the front panel's key menu.

    ``run()`` does it (quickly: queue a job rather than do the work) and returns a short
    result for the operator, such as "burn job 12 queued"; the panel shows it for a few
    seconds. An exception it raises is shown as its message. ``order`` places it in
    the menu (lower first)."""

    label: str
    run: Callable[[], str]
    order: int = 100


@hookspec
def dicombox_panel_screens(box: Box) -> list[PanelScreen]:
    """Status screens this plugin adds to the front panel (the burner's state, the
    printer's). Asked once, when the panel starts in the supervisor."""


@hookspec
def dicombox_panel_actions(box: Box) -> list[PanelAction]:
    """Entries this plugin adds to the front panel's key menu ("Burn last study").
    Asked once, when the panel starts in the supervisor."""
