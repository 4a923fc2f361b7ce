"""The running front panel: status screens in turn, the key menu, the backlight.

Two threads of the supervisor share the work. The status thread renders the current
screen about once a second and moves on every ``screen_s``; a screen may be slow (a
printer asked over the network), and keys must not wait for it. The keys thread alone
talks to the display: it reads the keys, runs menu actions and shows whichever frame
is due (an action's result, the menu, or the latest status screen).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.hal.panel import Panel
from dicombox.plugins.panel.activity import Activity
from dicombox.plugins.panel.menu import Menu
from dicombox.plugins.panel.screens import wrap
from dicombox.plugins.panel.settings import PanelSection

log = logging.getLogger("dicombox.panel")

REFRESH_S = 1.0  # how often the shown status screen is rendered again
KEY_POLL_S = 0.05  # key latency an operator does not notice


class Rotation:
    """The status screens in turn: each shown ``screen_s``, those with nothing to say
    skipped; UP and DOWN step through them by hand."""

    def __init__(
        self,
        screens: Sequence[PanelScreen],
        columns: int,
        rows: int,
        screen_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.screens = list(screens)
        self.columns = columns
        self.rows = rows
        self.screen_s = screen_s
        self._clock = clock
        self._current = 0
        self._due = 0.0  # when to move on; 0 = render the current one first
        self._step = 0
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self.screens[self._current].name if self.screens else ""

    def step(self, by: int) -> None:
        """Move ``by`` screens at the next ``frame()`` (UP: -1, DOWN: +1)."""
        with self._lock:
            self._step = by

    def frame(self) -> list[str]:
        """The lines to show now: the current screen, or the next one if it is due."""
        with self._lock:
            step, self._step = self._step, 0
        if not self.screens:
            return []
        now = self._clock()
        if step == 0 and self._due and now < self._due:
            lines = self.render(self._current)
            if lines:
                return lines
            step = 1  # it has nothing to say any more (the error was acknowledged)
        elif step == 0 and self._due:
            step = 1
        self._due = now + self.screen_s
        direction = -1 if step < 0 else 1
        start = self._current + step - direction
        for k in range(1, len(self.screens) + 1):
            index = (start + k * direction) % len(self.screens)
            lines = self.render(index)
            if lines:
                self._current = index
                return lines
        return []

    def render(self, index: int) -> list[str]:
        screen = self.screens[index]
        try:
            lines = [str(line) for line in screen.render(self.columns, self.rows)]
        except Exception as exc:  # one broken screen must not blank the others
            if screen.name not in self._failing:
                log.exception("panel screen %s failed", screen.name)
                self._failing.add(screen.name)
            return [screen.name, f"unavailable: {exc}"]
        self._failing.discard(screen.name)
        return lines[: self.rows]


class PanelController:
    def __init__(
        self,
        panel: Panel,
        settings: PanelSection,
        screens: Sequence[PanelScreen],
        actions: Sequence[PanelAction],
        activity: Activity,
        goodbye: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.panel = panel
        self.settings = settings
        self.activity = activity
        self.goodbye = list(goodbye)  # shown when the box stops
        self.rotation = Rotation(
            screens, panel.size.columns, panel.size.rows, settings.screen_s, clock
        )
        self.menu = Menu(actions)
        self._clock = clock
        self._status: list[str] = []
        self._result: list[str] = []
        self._result_until = 0.0
        self._last_key = clock()
        self._light = True
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._threads = [
            threading.Thread(target=self._status_loop, name="panel-status", daemon=True),
            threading.Thread(target=self._keys_loop, name="panel-keys", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._kick.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout)
        try:
            if self.goodbye:
                self.panel.show(self.goodbye)
            self.panel.close()
        except Exception:
            log.exception("panel: closing the display failed")

    def refresh(self) -> None:
        """Render the status screen due now (the status thread's turn)."""
        self._status = self.rotation.frame()

    def _status_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("panel: status screens failed")
            self._kick.wait(REFRESH_S)
            self._kick.clear()

    def _keys_loop(self) -> None:
        while not self._stop.wait(KEY_POLL_S):
            try:
                self.tick()
            except Exception:  # the panel is a window on the box: never its downfall
                log.exception("panel: the key loop failed")
                self._stop.wait(1.0)

    def tick(self) -> None:
        """One turn of the keys thread: keys, then the frame and the backlight."""
        pressed = self.panel.keys()
        for key in pressed:
            self.on_key(key)
        now = self._clock()
        if self.menu.is_open and now - self._last_key > self.settings.menu_s:
            self.menu.close()
        self.panel.show(self.frame())
        self._set_light(self._wants_light(now))

    def on_key(self, key: str) -> None:
        self._last_key = self._clock()
        if not self._light:
            self._set_light(True)
            return  # the press that wakes the display does nothing else
        if self._result:
            self._result = []  # any key dismisses a result, and does nothing else
            return
        if self.menu.is_open:
            action = self.menu.press(key)
            if action is not None:
                self.run(action)
        elif key == "OK":
            self.menu.open()
        elif key in ("UP", "DOWN"):
            self.rotation.step(-1 if key == "UP" else 1)
            self._kick.set()

    def run(self, action: PanelAction) -> str:
        """Run a menu action and show its result for ``result_s``."""
        self.panel.show([action.label, "..."])
        try:
            result = str(action.run())
        except Exception as exc:
            log.exception("panel action %r failed", action.label)
            result = f"failed: {exc}"
        log.info("panel: %s: %s", action.label, result)
        self._result = wrap(result, self.panel.size.columns)
        self._result_until = self._clock() + self.settings.result_s
        return result

    def frame(self) -> list[str]:
        if self._result and self._clock() < self._result_until:
            return self._result
        self._result = []
        if self.menu.is_open:
            return self.menu.lines(self.panel.size.rows)
        return self._status

    def _wants_light(self, now: float) -> bool:
        if not self.settings.backlight_s or self.menu.is_open:
            return True
        if self.activity.pending_failure() is not None:
            return True  # an error waiting to be seen keeps the light on
        return now - self._last_key < self.settings.backlight_s

    def _set_light(self, on: bool) -> None:
        if on != self._light:
            self._light = on
            self.panel.backlight(on)
