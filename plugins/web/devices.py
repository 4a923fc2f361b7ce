"""The box's devices and their state, for the devices page and the dashboard.

Burners and printers belong to the plugins that drive them, which describe them for
the front panel through the ``dicombox_panel_screens`` hook: the console shows those
same screens (the burner's disc, each printer's condition), asked no more often than
the panel asks. USB sticks are listed through the HAL as the ``[media]`` section sets
it up; the front panel is described from ``[panel]``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from dicombox.core.box import Box
from dicombox.core.config import load_part
from dicombox.core.hookspecs import PanelScreen
from dicombox.hal.registry import DriverContext
from dicombox.hal.removable import REMOVABLE, RemovableError

log = logging.getLogger("dicombox.web")
COLUMNS, ROWS = 40, 8  # the console is no LCD: let the screens say all they have


@dataclass(frozen=True)
class Device:
    kind: str  # burner | printer | usb | panel | another plugin's screen name
    name: str
    state: str
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Devices:
    def __init__(self, box: Box) -> None:
        self.box = box
        self._screens: list[PanelScreen] | None = None
        self._lock = threading.Lock()

    def screens(self) -> list[PanelScreen]:
        """The plugins' panel screens, asked for once (each keeps its own cache)."""
        with self._lock:
            if self._screens is None:
                try:
                    batches = self.box.hook.dicombox_panel_screens(box=self.box)
                except Exception:
                    log.exception("dicombox_panel_screens failed; no device screens")
                    batches = []
                found = [s for batch in batches for s in batch or []]
                self._screens = sorted(found, key=lambda s: s.order)
            return self._screens

    def screen_devices(self) -> list[Device]:
        devices = []
        for screen in self.screens():
            try:
                lines = [str(line) for line in screen.render(COLUMNS, ROWS)]
            except Exception as exc:  # one device's failure is its state, not the page's
                lines = [screen.name, f"unavailable: {exc}"]
            if lines:
                devices.append(Device(screen.name, lines[0], " · ".join(lines[1:]), lines))
        return devices

    def usb(self) -> list[Device]:
        media = self.box.config.extra.get("media")
        if media is None:
            return []
        kind = getattr(media, "usb", "simulated")
        try:
            options = load_part(REMOVABLE.options_type(kind), media, "media")
            context = DriverContext(data_dir=self.box.data_dir)
            sticks = REMOVABLE.open(kind, options, context).list()
        except (RemovableError, OSError, ValueError) as exc:
            return [Device("usb", "USB", f"cannot list sticks: {exc}")]
        if not sticks:
            return [Device("usb", "USB", "no stick plugged in")]
        return [
            Device("usb", s.name, f"{s.free_bytes >> 20} MB free", [str(s.root)]) for s in sticks
        ]

    def panel(self) -> list[Device]:
        panel = self.box.config.extra.get("panel")
        if panel is None:
            return []
        port = str(getattr(panel, "port", "none"))
        driver = str(getattr(panel, "driver", ""))  # a plugin's display may have no port
        no_port = port.strip().lower() in ("", "none")
        if no_port and not driver:
            return [Device("panel", "front panel", "none configured")]
        where = f"the {driver} driver" if no_port else port
        return [Device("panel", "front panel", f"{getattr(panel, 'size', '')} on {where}")]

    def all(self) -> list[Device]:
        return [*self.screen_devices(), *self.usb(), *self.panel()]
