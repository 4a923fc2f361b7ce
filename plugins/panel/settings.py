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
    """The front panel plugin: a serial character LCD with a keypad, speaking the Matrix
    Orbital command set. Its screens and keys are in
    [user-guide.md](user-guide.md#the-front-panel)."""

    port: str = "none"
    """Where the display is: a serial device (`/dev/ttyUSB0`, or better a stable
    `/dev/serial/by-id/…` link), a pty, or a pyserial URL. `"loop://"` simulates a display
    in memory (the box reads its own output back). `"log"`: no display, each new screen is
    logged. `"none"`: no panel at all."""
    driver: str = ""
    """The display's driver; empty: chosen by `port` (`"log"` for the log, else `serial`);
    or the name of a driver a plugin adds."""
    baud: int = 19200
    """The display's baud rate (Matrix Orbital's default)."""
    size: str = "20x4"
    """Columns x rows: `20x4`, `16x2`, `20x2` … (8–40 columns, 1–4 rows). On smaller
    displays each screen shows its most important lines."""
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    """The single ASCII byte each key of the keypad sends, and what it means: `UP`, `DOWN`,
    `OK` or `BACK`. Keypads differ: set the bytes yours sends (the table replaces the
    default as a whole; one key must mean `OK`). Other bytes are ignored."""
    screen_s: float = 5.0
    """How long each status screen is shown before the next."""
    backlight_s: float = 300.0
    """The backlight goes off this long after the last key press (`0` = always on). It
    stays on while the menu is open or an error is waiting to be acknowledged. The first
    key press on a dark display only turns the light back on."""
    result_s: float = 4.0
    """How long the result of a menu action stays on the display (any key dismisses it)."""
    menu_s: float = 30.0
    """An open menu closes by itself after this long without a key."""
    reconnect_s: float = 5.0
    """How often a missing or unplugged display is looked for."""
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
