"""Front panel: status screens and a key menu on the serial LCD next to the box.

The panel runs in the supervisor (it owns the one display): ``dicombox_start`` opens the
display (``[panel] port``) and starts the panel's threads, ``dicombox_stop`` ends them.
It is driven by core events (images stored, jobs, failures; see ``activity``). Its own
screens and actions are in ``screens``; other plugins add theirs through the
``dicombox_panel_screens`` and ``dicombox_panel_actions`` hooks (the media plugin: the
burner and "Burn last study"; the print plugin: the printer and "Print last study").
"""

from __future__ import annotations

import logging
from typing import TypeVar

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.hal.panel import PANELS
from dicombox.hal.registry import DriverContext
from dicombox.plugins.panel.activity import Activity
from dicombox.plugins.panel.controller import PanelController
from dicombox.plugins.panel.screens import core_actions, core_screens
from dicombox.plugins.panel.settings import PanelSection

__version__ = "1.0.0"
log = logging.getLogger("dicombox.panel")

_T = TypeVar("_T", PanelScreen, PanelAction)

# The panel of each running box (one per supervisor; keyed so tests may run several).
_running: dict[int, PanelController] = {}


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"panel": PanelSection}


def _contributed(box: Box, hook_name: str) -> list:
    """What the other plugins return from a panel hook; a plugin whose hook fails
    costs its own entries, not the panel."""
    try:
        batches = getattr(box.hook, hook_name)(box=box)
    except Exception:
        log.exception("panel: %s failed; going on without its entries", hook_name)
        return []
    return [item for batch in batches for item in batch or []]


def _in_order(items: list[_T]) -> list[_T]:
    return sorted(items, key=lambda item: item.order)  # stable: same order, hook order


def build_panel(box: Box, settings: PanelSection) -> PanelController:
    """The panel of ``box`` with every plugin's screens and actions, not started."""
    activity = Activity()
    activity.subscribe(box)
    screens = _in_order(
        [*core_screens(box, activity), *_contributed(box, "dicombox_panel_screens")]
    )
    actions = _in_order(
        [*core_actions(box, activity), *_contributed(box, "dicombox_panel_actions")]
    )
    context = DriverContext(data_dir=box.config.data_dir)
    display = PANELS.open(settings.driver_name, settings.panel_options(), context)
    return PanelController(
        display,
        settings,
        screens,
        actions,
        activity,
        goodbye=[box.config.box.ae_title, "stopped"],
    )


@hookimpl
def dicombox_start(box: Box) -> None:
    settings: PanelSection = box.section("panel")
    if not settings.wanted:
        return  # no display: nobody to render screens for (printers are not even asked)
    try:
        controller = build_panel(box, settings)
    except Exception:  # the box serves DICOM without its panel rather than not at all
        log.exception("front panel on %s could not start", settings.port)
        return
    controller.start()
    _running[id(box)] = controller
    log.info(
        "front panel: %s (%s), %d screens, %d menu entries",
        settings.port,
        settings.size,
        len(controller.rotation.screens),
        len(controller.menu.actions),
    )


@hookimpl
def dicombox_stop(box: Box) -> None:
    controller = _running.pop(id(box), None)
    if controller is not None:
        controller.stop()
