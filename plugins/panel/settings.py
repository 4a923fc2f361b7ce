"""The [panel] configuration section."""

from __future__ import annotations

from dataclasses import dataclass, field

from dicombox.hal.panel import DEFAULT_KEYS, KEY_NAMES, PanelSize


@dataclass(frozen=True)
class PanelSection:
    # A serial device (/dev/ttyUSB0, better a /dev/serial/by-id/… link), a pty, a
    # pyserial URL (loop:// simulates a display), "log" (no display: the screens go to
    # the log), or "none": no panel at all.
    port: str = "none"
    baud: int = 19200
    size: str = "20x4"  # columns x rows: 20x4, 16x2 …
    # The byte each key of the keypad sends, and what it means: UP, DOWN, OK or BACK.
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    screen_s: float = 5.0  # each status screen shows this long
    backlight_s: float = 300.0  # the light goes off this long after the last key; 0 = never
    result_s: float = 4.0  # how long the result of a menu action stays shown
    menu_s: float = 30.0  # an open menu closes after this long without a key
    reconnect_s: float = 5.0  # a display that is not there is looked for this often

    @property
    def panel_size(self) -> PanelSize:
        return PanelSize.parse(self.size)

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

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
