"""The front panel: a character LCD with a keypad, behind a small interface.

Every driver offers ``show(lines)``, ``backlight(on)``, ``keys()`` and ``close()`` and
says its ``size``. ``SerialPanel`` drives a display speaking the Matrix Orbital command
set (their LK/VK modules, and the many HD44780 serial backpacks that copy it) through
pyserial: a device (/dev/ttyUSB0, a udev /dev/serial/by-id link), a pty, or pyserial's
``loop://`` as a simulator. ``LogPanel`` (port "log") is a panel without hardware:
its screens go to the log.

A display cable can be pulled at any moment. The serial driver then keeps what it
should show, tries the port again every few seconds, and redraws everything once the
display is back; it never raises to its caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial

from dicombox.hal.registry import DriverContext, Registry

log = logging.getLogger("dicombox.hal.panel")

# The Matrix Orbital command set: every command is 0xFE and a command byte.
PREFIX = 0xFE
CLEAR = bytes([PREFIX, 0x58])  # clear the screen
HOME = bytes([PREFIX, 0x48])  # cursor to column 1, row 1
SET_CURSOR = 0x47  # then column, row (both 1-based)
BACKLIGHT_ON = 0x42  # then minutes (0 = stay on)
BACKLIGHT_OFF = bytes([PREFIX, 0x46])
DEFINE_CHARACTER = 0x4E  # then slot 0..7 and 8 row bytes (5 pixels each)

KEY_NAMES = ("UP", "DOWN", "OK", "BACK")
# What each key of the keypad sends, as a single ASCII byte; keypads differ, so the
# panel's configuration can say otherwise.
DEFAULT_KEYS = {"A": "UP", "B": "DOWN", "E": "OK", "F": "BACK"}
RECONNECT_S = 5.0


def set_cursor(column: int, row: int) -> bytes:
    """Move the cursor to ``column``, ``row`` (1-based, as the display counts)."""
    return bytes([PREFIX, SET_CURSOR, column, row])


def backlight_on(minutes: int = 0) -> bytes:
    return bytes([PREFIX, BACKLIGHT_ON, minutes])


def define_character(slot: int, rows: Sequence[int]) -> bytes:
    """Make character ``slot`` (0..7) the 5x8 glyph ``rows`` (top row first)."""
    if not 0 <= slot <= 7 or len(rows) != 8:
        raise ValueError("a custom character has a slot 0..7 and 8 rows")
    return bytes([PREFIX, DEFINE_CHARACTER, slot, *(r & 0x1F for r in rows)])


@dataclass(frozen=True)
class PanelSize:
    columns: int = 20
    rows: int = 4

    @classmethod
    def parse(cls, text: str) -> PanelSize:
        """``"20x4"`` (columns x rows), as displays are sold."""
        cols, sep, rows = text.lower().partition("x")
        if not (sep and cols.strip().isdigit() and rows.strip().isdigit()):
            raise ValueError(f"panel size {text!r}: write columns x rows, e.g. 20x4 or 16x2")
        size = cls(int(cols), int(rows))
        if not (8 <= size.columns <= 40 and 1 <= size.rows <= 4):
            raise ValueError(f"panel size {text!r}: 8 to 40 columns, 1 to 4 rows")
        return size

    def __str__(self) -> str:
        return f"{self.columns}x{self.rows}"


def _printable(char: str) -> str:
    # Bytes 0..7 show the custom characters; anything outside ASCII has no glyph that
    # is the same on every display's character ROM, and 0xFE would start a command.
    return char if " " <= char <= "~" or char < "\x08" else "?"


def fit(lines: Sequence[str], size: PanelSize) -> list[str]:
    """``lines`` as the display holds them: ``size.rows`` lines of exactly
    ``size.columns`` printable characters (cut, padded, blank rows added)."""
    rows = [str(line) for line in list(lines)[: size.rows]]
    rows += [""] * (size.rows - len(rows))
    return ["".join(_printable(c) for c in row[: size.columns]).ljust(size.columns) for row in rows]


def frame_bytes(old: Sequence[str] | None, new: Sequence[str]) -> bytes:
    """The commands that turn the screen ``old`` into ``new`` (both from ``fit``).

    Only what changed is sent: per row, the span from the first to the last changed
    character. ``old`` None means the screen's content is unknown (just connected):
    it is cleared first, and then only the non-blank text is written."""
    out = bytearray()
    if old is None:
        out += CLEAR
        old = [" " * len(row) for row in new]
    for row, (was, now) in enumerate(zip(old, new, strict=True)):
        changed = [i for i, (a, b) in enumerate(zip(was, now, strict=True)) if a != b]
        if not changed:
            continue
        first, last = changed[0], changed[-1]
        out += HOME if (first, row) == (0, 0) else set_cursor(first + 1, row + 1)
        out += now[first : last + 1].encode("ascii")
    return bytes(out)


class MatrixOrbitalScreen:
    """What a Matrix Orbital display shows after the bytes it was sent: the other end
    of ``SerialPanel``, for the ``loop://`` simulator and for tests."""

    def __init__(self, size: PanelSize = PanelSize()) -> None:
        self.size = size
        self.grid = [[" "] * size.columns for _ in range(size.rows)]
        self.column = self.row = 0
        self.light = True
        self.glyphs: dict[int, bytes] = {}
        self._pending = bytearray()  # a command cut in two by the serial line

    @property
    def lines(self) -> list[str]:
        return ["".join(row) for row in self.grid]

    def text(self) -> str:
        return "\n".join(self.lines)

    def feed(self, data: bytes) -> None:
        buf = self._pending + data
        i = 0
        while i < len(buf):
            if buf[i] != PREFIX:
                self._put(buf[i])
                i += 1
                continue
            used = self._command(buf[i:])
            if used == 0:
                break  # the rest of the command has not arrived yet
            i += used
        self._pending = bytearray(buf[i:])

    def _command(self, buf: bytes) -> int:
        """Carry out the command at the start of ``buf``; the bytes it took (0: cut off)."""
        if len(buf) < 2:
            return 0
        code = buf[1]
        lengths = {SET_CURSOR: 4, BACKLIGHT_ON: 3, DEFINE_CHARACTER: 11}
        need = lengths.get(code, 2)
        if len(buf) < need:
            return 0
        if code == CLEAR[1]:
            self.grid = [[" "] * self.size.columns for _ in range(self.size.rows)]
            self.column = self.row = 0
        elif code == HOME[1]:
            self.column = self.row = 0
        elif code == SET_CURSOR:
            self.column = min(max(buf[2] - 1, 0), self.size.columns - 1)
            self.row = min(max(buf[3] - 1, 0), self.size.rows - 1)
        elif code == BACKLIGHT_ON:
            self.light = True
        elif code == BACKLIGHT_OFF[1]:
            self.light = False
        elif code == DEFINE_CHARACTER:
            self.glyphs[buf[2]] = bytes(buf[3:11])
        return need  # commands it does not know are skipped, as a display does

    def _put(self, byte: int) -> None:
        self.grid[self.row][self.column] = chr(byte)
        self.column += 1
        if self.column == self.size.columns:  # the display wraps to the next row
            self.column = 0
            self.row = (self.row + 1) % self.size.rows


class Panel(Protocol):
    size: PanelSize

    def show(self, lines: Sequence[str]) -> None: ...

    def backlight(self, on: bool) -> None: ...

    def keys(self) -> list[str]: ...

    def close(self) -> None: ...


class LogPanel:
    """No display: each new screen goes to the log, and no key is ever pressed."""

    def __init__(self, size: PanelSize = PanelSize()) -> None:
        self.size = size
        self._shown: list[str] | None = None

    def show(self, lines: Sequence[str]) -> None:
        frame = fit(lines, self.size)
        if frame != self._shown:
            self._shown = frame
            log.info("panel | %s |", " | ".join(line.rstrip() for line in frame))

    def backlight(self, on: bool) -> None:
        pass

    def keys(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


Opener = Callable[..., Any]  # serial.serial_for_url's signature


class SerialPanel:
    """A Matrix Orbital display on a serial port, a pty or ``loop://``.

    Keys arrive as single bytes (the display sends them by itself, its "auto transmit"
    default); ``keymap`` names them (``{"A": "UP"}``), and bytes it does not name are
    dropped. On ``loop://`` every byte written comes straight back: the driver reads
    its own output back into a ``MatrixOrbitalScreen`` (``simulated``), so the whole
    path is exercised, and ``press`` puts a key on the line."""

    def __init__(
        self,
        port: str,
        baud: int = 19200,
        size: PanelSize = PanelSize(),
        keymap: Mapping[str, str] | None = None,
        reconnect_s: float = RECONNECT_S,
        opener: Opener = serial.serial_for_url,
    ) -> None:
        self.port = port
        self.baud = baud
        self.size = size
        self.keymap = dict(DEFAULT_KEYS if keymap is None else keymap)
        self.reconnect_s = reconnect_s
        self._opener = opener
        self._serial: Any = None
        self._next_try = 0.0
        self._lost_logged = False
        self._wanted = fit([], size)
        self._shown: list[str] | None = None  # what the display holds; None = unknown
        self._light = True
        self._glyphs: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._echo = bytearray()  # written on loop:// and not read back yet
        self.simulated = MatrixOrbitalScreen(size) if port.startswith("loop://") else None
        with self._lock:
            self._connect()

    @property
    def connected(self) -> bool:
        return self._serial is not None

    def show(self, lines: Sequence[str]) -> None:
        """Show ``lines`` (cut or padded to the display); sends only what changed."""
        with self._lock:
            self._wanted = fit(lines, self.size)
            if self._connect():
                self._write(frame_bytes(self._shown, self._wanted), self._wanted)

    def backlight(self, on: bool) -> None:
        with self._lock:
            if on == self._light:
                return
            self._light = on
            if self._serial is None:
                self._connect()  # a fresh connection sends the whole state, this included
            else:
                self._write(backlight_on(0) if on else BACKLIGHT_OFF)

    def define_character(self, slot: int, rows: Sequence[int]) -> None:
        """Make ``chr(slot)`` in shown text draw the glyph ``rows``; kept and sent
        again after a reconnect (a display that lost power forgets it)."""
        command = define_character(slot, rows)
        with self._lock:
            self._glyphs[slot] = command
            if self._serial is None:
                self._connect()
            else:
                self._write(command)

    def keys(self) -> list[str]:
        """The keys pressed since the last call, by name; never waits."""
        with self._lock:
            if not self._connect():
                return []
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self._lost(exc)
                return []
            data = self._without_echo(data)
        pressed = []
        for byte in data:
            name = self.keymap.get(chr(byte))
            if name is None:
                log.debug("panel: ignored byte %#04x from the keypad", byte)
            else:
                pressed.append(name)
        return pressed

    def press(self, key: str) -> None:
        """Put the byte of the key ``key`` (a name or the byte itself) on the line, as
        the keypad would: for the ``loop://`` simulator."""
        byte = key if len(key) == 1 else next((b for b, n in self.keymap.items() if n == key), "")
        if not byte:
            raise ValueError(f"no byte of the keypad means {key!r}")
        with self._lock:
            if self._connect():
                try:
                    self._serial.write(byte.encode("latin-1"))
                except (serial.SerialException, OSError) as exc:
                    self._lost(exc)

    def close(self) -> None:
        with self._lock:
            self._close()
            self._next_try = float("inf")  # closed on purpose: no more reconnects

    def _without_echo(self, data: bytes) -> bytes:
        """On loop://, our own output coming back: onto the simulated screen, and what
        follows it (a pressed key) is the keypad's."""
        if self.simulated is None:
            return data
        echoed, keys = bytearray(), bytearray()
        for byte in data:
            # The line keeps the order of writes and presses: a byte that is not the
            # next one we wrote was put there by the keypad.
            if self._echo and byte == self._echo[0]:
                echoed.append(byte)
                del self._echo[0]
            else:
                keys.append(byte)
        self.simulated.feed(bytes(echoed))
        return bytes(keys)

    def _connect(self) -> bool:
        """Is the port open? If not, and it is time to try again, open it and put the
        whole state (glyphs, backlight, screen) on the display."""
        if self._serial is not None:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.reconnect_s
        try:
            # timeout=0: reads never wait. write_timeout: a display that stopped reading
            # must not hang the panel's thread; it counts as gone.
            self._serial = self._opener(self.port, baudrate=self.baud, timeout=0, write_timeout=1)
        except (serial.SerialException, OSError, ValueError) as exc:
            if not self._lost_logged:
                log.warning(
                    "front panel on %s not available (%s); trying again every %g s",
                    self.port,
                    exc,
                    self.reconnect_s,
                )
                self._lost_logged = True
            return False
        log.info("front panel connected on %s (%s, %d baud)", self.port, self.size, self.baud)
        self._lost_logged = False
        self._echo.clear()
        self._shown = None
        setup = b"".join(self._glyphs.values())
        setup += backlight_on(0) if self._light else BACKLIGHT_OFF
        return self._write(setup + frame_bytes(None, self._wanted), self._wanted)

    def _write(self, data: bytes, frame: list[str] | None = None) -> bool:
        if data:
            try:
                self._serial.write(data)
            except (serial.SerialException, OSError) as exc:
                self._lost(exc)
                return False
            if self.simulated is not None:
                self._echo += data
        if frame is not None:
            self._shown = list(frame)
        return True

    def _lost(self, exc: BaseException) -> None:
        log.warning(
            "front panel on %s lost (%s); trying again every %g s", self.port, exc, self.reconnect_s
        )
        self._lost_logged = True
        self._close()
        self._next_try = time.monotonic() + self.reconnect_s

    def _close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass  # already gone with the cable
        self._serial = None
        self._shown = None


@dataclass(frozen=True)
class LogPanelOptions:
    size: str = "20x4"  # columns x rows, as PanelSize.parse reads it


@dataclass(frozen=True)
class SerialPanelOptions:
    port: str = "loop://"  # a serial device, a pty or a pyserial URL
    baud: int = 19200
    size: str = "20x4"
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    reconnect_s: float = RECONNECT_S


def _open_log(options: LogPanelOptions, context: DriverContext) -> LogPanel:
    return LogPanel(PanelSize.parse(options.size))


def _open_serial(options: SerialPanelOptions, context: DriverContext) -> SerialPanel:
    size = PanelSize.parse(options.size)
    return SerialPanel(options.port, options.baud, size, options.keys, options.reconnect_s)


PANELS: Registry[Panel] = Registry("panel")
PANELS.register("log", _open_log, LogPanelOptions)  # no display: the screens go to the log
PANELS.register("serial", _open_serial, SerialPanelOptions)
