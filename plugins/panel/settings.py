"""The [panel] configuration section.

``driver`` names the display's driver in the panels' registry; left empty, ``port``
chooses as it always has ("log": the log, else a Matrix Orbital display on the port).
The driver reads its own keys from ``[panel]``; keys only a plugin's driver reads are
kept for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dicombox.core.config import ConfigError, check_choice, check_other_keys, load_part, other_keys
from dicombox.hal.panel import DEFAULT_KEYS, KEY_NAMES, PANELS, PanelSize

NO_PANEL = ("", "none")


@dataclass(frozen=True)
class PanelSection:
    # A serial device (/dev/ttyUSB0, better a /dev/serial/by-id/… link), a pty, a
    # pyserial URL (loop:// simulates a display), "log" (no display: the screens go to
    # the log), or "none": no panel at all.
    port: str = "none"
    driver: str = ""  # "" = by port: "log" for the log, else "serial"; or a plugin's driver
    baud: int = 19200
    size: str = "20x4"  # columns x rows: 20x4, 16x2 …
    # The byte each key of the keypad sends, and what it means: UP, DOWN, OK or BACK.
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    screen_s: float = 5.0  # each status screen shows this long
    backlight_s: float = 300.0  # the light goes off this long after the last key; 0 = never
    result_s: float = 4.0  # how long the result of a menu action stays shown
    menu_s: float = 30.0  # an open menu closes after this long without a key
    reconnect_s: float = 5.0  # a display that is not there is looked for this often
    driver_keys: dict[str, Any] = other_keys()  # the keys of plugins' drivers

    @property
    def panel_size(self) -> PanelSize:
        return PanelSize.parse(self.size)

    @property
    def wanted(self) -> bool:
        """Is there a panel at all? Not with port "none" and no driver named."""
        return bool(self.driver) or self.port.strip().lower() not in NO_PANEL

    @property
    def driver_name(self) -> str:
        if self.driver:
            return self.driver
        return "log" if self.port.strip().lower() in (*NO_PANEL, "log") else "serial"

    def panel_options(self, name: str = "panel") -> Any:
        """The options of the display's driver, from this section."""
        options_type = PANELS.options_type(self.driver_name)
        return load_part(options_type, self, name, chosen=f"driver = {self.driver_name!r}")

    def validate(self, name: str) -> None:
        if self.driver:
            check_choice(f"{name}.driver", self.driver, PANELS.names())
        check_other_keys(self, name, PANELS.config_keys())
        try:
            PanelSize.parse(self.size)
        except ValueError as exc:
            raise ConfigError(f"{name}.size = {self.size!r}: {exc}") from None
        for byte, meaning in self.keys.items():
            if len(byte) != 1 or not " " < byte <= "~":
                raise ConfigError(
                    f"{name}.keys: {byte!r} is not a key's byte; name each key by the one "
                    'printable ASCII character it sends, e.g. A = "UP"'
                )
            if meaning not in KEY_NAMES:
                raise ConfigError(
                    f"{name}.keys.{byte} = {meaning!r}: one of {', '.join(KEY_NAMES)}"
                )
        if "OK" not in self.keys.values():
            raise ConfigError(f"{name}.keys: no key means OK, so the menu could never open")
        if self.baud <= 0:
            raise ConfigError(f"{name}.baud = {self.baud}: a baud rate such as 19200")
        for key in ("screen_s", "result_s", "menu_s", "reconnect_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{name}.{key} = {getattr(self, key)}: more than 0")
        if self.backlight_s < 0:
            raise ConfigError(f"{name}.backlight_s = {self.backlight_s}: 0 (always on) or more")
        self.panel_options(name)
