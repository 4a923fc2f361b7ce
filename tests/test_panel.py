"""The front panel: the Matrix Orbital driver byte for byte over a pty and loop://, its
reconnect when the cable is pulled, the panel plugin's screens, menu and backlight, and
a real box whose panel, driven through a pty, burns the study just received."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.config import ConfigError, load_config
from dicombox.core.events import Event
from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.hal.panel import (
    BACKLIGHT_OFF,
    CLEAR,
    HOME,
    PANELS,
    LogPanel,
    MatrixOrbitalScreen,
    PanelSize,
    SerialPanel,
    backlight_on,
    fit,
    frame_bytes,
    set_cursor,
)
from dicombox.plugins import panel as panel_plugin
from dicombox.plugins.panel import build_panel
from dicombox.plugins.panel.activity import Activity, short_progress
from dicombox.plugins.panel.controller import PanelController, Rotation
from dicombox.plugins.panel.menu import Menu
from dicombox.plugins.panel.screens import (
    error_lines,
    identity_lines,
    jobs_lines,
    today_lines,
)
from dicombox.plugins.panel.settings import PanelSection
from tests.conftest import require
from tests.support.peers import storescu
from tests.support.synthetic import ct_dataset

FE = b"\xfe"
TWENTY_BY_FOUR = PanelSize(20, 4)


class PtyDisplay:
    """The display's end of a pty: reads what the box shows, presses keys."""

    def __init__(self, size: PanelSize = TWENTY_BY_FOUR) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no newline translation: bytes as sent
        self.path = os.ttyname(self.slave)
        self.screen = MatrixOrbitalScreen(size)

    def read(self, quiet: float = 0.1) -> bytes:
        """Everything sent until the line has been quiet for ``quiet`` seconds."""
        data = bytearray()
        while select.select([self.master], [], [], quiet)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the panel closed its end for a moment
                break
            if not chunk:
                break
            data += chunk
        self.screen.feed(bytes(data))
        return bytes(data)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.05)
            if text in self.screen.text():
                return self.screen.text()
        raise AssertionError(f"{text!r} never shown; the screen:\n{self.screen.text()}")

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def display() -> Iterator[PtyDisplay]:
    end = PtyDisplay()
    yield end
    end.close()


def wait_keys(panel: SerialPanel, count: int, timeout: float = 5) -> list[str]:
    keys: list[str] = []
    deadline = time.monotonic() + timeout
    while len(keys) < count and time.monotonic() < deadline:
        keys += panel.keys()
        time.sleep(0.01)
    return keys


# --- the driver --------------------------------------------------------------------


def test_fit_pads_cuts_and_replaces_what_the_display_cannot_show():
    size = PanelSize(8, 2)
    assert fit(["a much longer line", "Zürich"], size) == ["a much l", "Z?rich  "]
    assert fit([], size) == [" " * 8, " " * 8]
    assert fit(["\x00bar", "x", "dropped"], size) == ["\x00bar    ", "x       "]


def test_frame_bytes_send_only_the_changed_span():
    size = PanelSize(10, 2)
    first = fit(["hello", "world"], size)
    assert frame_bytes(None, first) == CLEAR + HOME + b"hello" + set_cursor(1, 2) + b"world"
    second = fit(["hello", "wired"], size)
    assert frame_bytes(first, second) == set_cursor(2, 2) + b"ire"
    assert frame_bytes(second, second) == b""


def test_the_emulated_screen_shows_what_the_bytes_say():
    size = PanelSize(20, 4)
    screen = MatrixOrbitalScreen(size)
    old = None
    for lines in (["DICOMBOX", "", "port 104"], ["DICOMBOX", "busy", "port 11112", "x"]):
        new = fit(lines, size)
        data = frame_bytes(old, new)
        screen.feed(data[:3])  # a command cut in two on the line
        screen.feed(data[3:])
        assert screen.lines == new
        old = new
    screen.feed(BACKLIGHT_OFF)
    assert not screen.light


def test_show_over_a_pty_writes_matrix_orbital_commands(display):
    panel = SerialPanel(display.path, size=PanelSize(20, 4))
    assert panel.connected
    assert display.read() == backlight_on(0) + CLEAR  # a fresh display: light on, blank
    panel.show(["DICOMBOX", "", "port 104"])
    assert display.read() == HOME + b"DICOMBOX" + set_cursor(1, 3) + b"port 104"
    panel.show(["DICOMBOX", "", "port 104"])
    assert display.read() == b""  # an unchanged frame sends nothing
    panel.show(["DICOMBOX", "", "port 11112"])
    assert display.read() == set_cursor(7, 3) + b"1112"
    panel.show(["A line longer than twenty characters"])
    assert display.read() == (HOME + b"A line longer than t" + set_cursor(1, 3) + b"          ")
    assert display.screen.lines[0] == "A line longer than t"
    panel.close()


def test_backlight_and_custom_characters_over_a_pty(display):
    panel = SerialPanel(display.path)
    display.read()
    panel.backlight(False)
    assert display.read() == FE + b"\x46"
    panel.backlight(False)
    assert display.read() == b""
    panel.backlight(True)
    assert display.read() == FE + b"\x42\x00"
    bar = [0x1F] * 8
    panel.define_character(0, bar)
    assert display.read() == FE + b"\x4e\x00" + bytes(bar)
    panel.close()


def test_keys_are_read_back_by_name(display):
    panel = SerialPanel(display.path)
    assert panel.keys() == []  # nothing pressed: returns at once
    display.press(b"AEXBF")  # X: no key of the map, dropped
    assert wait_keys(panel, 4) == ["UP", "OK", "DOWN", "BACK"]
    panel.close()
    numbered = SerialPanel(display.path, keymap={"1": "UP", "5": "OK"})
    display.press(b"51A")
    assert wait_keys(numbered, 2) == ["OK", "UP"]
    numbered.close()


def test_the_loop_url_simulates_a_display():
    panel = SerialPanel("loop://", size=PanelSize(16, 2))
    panel.show(["DICOMBOX", "idle"])
    assert panel.keys() == []  # our own bytes come back, and are not keys
    assert panel.simulated is not None
    assert panel.simulated.lines == ["DICOMBOX        ", "idle            "]
    panel.show(["DICOMBOX", "receiving 3"])
    panel.press("OK")
    panel.press("B")
    assert panel.keys() == ["OK", "DOWN"]
    assert panel.simulated.lines[1] == "receiving 3     "
    panel.close()


def test_reconnects_when_the_cable_is_pulled_and_put_back(tmp_path):
    link = tmp_path / "ttyLCD"  # like udev's /dev/serial/by-id link
    first = PtyDisplay()
    link.symlink_to(first.path)
    panel = SerialPanel(str(link), reconnect_s=0.2)
    panel.show(["before"])
    assert b"before" in first.read()

    first.close()  # the cable is pulled
    panel.show(["while away"])  # never raises
    assert panel.keys() == []
    panel.show(["while away", "still"])
    assert not panel.connected

    second = PtyDisplay()  # plugged in again: a new device behind the same link
    try:
        link.unlink()
        link.symlink_to(second.path)
        deadline = time.monotonic() + 5
        while not panel.connected and time.monotonic() < deadline:
            time.sleep(0.05)
            panel.keys()
        assert panel.connected
        second.read()
        # the whole screen comes back on the fresh display, as wanted last
        assert second.screen.lines[:2] == fit(["while away", "still"], PanelSize())[:2]
        second.press(b"E")
        assert wait_keys(panel, 1) == ["OK"]
    finally:
        panel.close()
        second.close()


def test_a_panel_missing_at_start_is_looked_for(tmp_path):
    link = tmp_path / "ttyLCD"
    panel = SerialPanel(str(link), reconnect_s=0.1)
    assert not panel.connected
    panel.show(["waiting"])
    end = PtyDisplay()
    try:
        link.symlink_to(end.path)
        time.sleep(0.2)
        panel.show(["waiting"])
        assert panel.connected
        assert "waiting" in end.wait_for("waiting", timeout=2)
    finally:
        panel.close()
        end.close()


def test_the_log_port_logs_the_screens(caplog):
    panel = PANELS.open("log")
    assert isinstance(panel, LogPanel)
    with caplog.at_level(logging.INFO, logger="dicombox.hal.panel"):
        panel.show(["DICOMBOX", "idle"])
        panel.show(["DICOMBOX", "idle"])
    assert [r.getMessage() for r in caplog.records] == ["panel | DICOMBOX | idle |  |  |"]
    assert panel.keys() == []


def test_panel_size_is_parsed_and_checked():
    assert PanelSize.parse("16x2") == PanelSize(16, 2)
    for bad in ("20", "20x9", "axb", "4x2"):
        with pytest.raises(ValueError):
            PanelSize.parse(bad)


# --- the plugin --------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "box.toml"
    path.write_text(f'[box]\ndata_dir = "{tmp_path / "var"}"\n{text}')
    return path


@pytest.fixture
def real_box(tmp_path: Path) -> Iterator[Box]:
    """A box opened in-process, as the supervisor opens it (no network)."""
    config, pm, infos = load_plugins_and_config(
        write_config(tmp_path, f'[media]\ndiscs_dir = "{tmp_path / "discs"}"\n')
    )
    box = open_box(config, pm, infos, role="supervisor")
    yield box
    box.close()


def test_config_section_defaults_and_errors(tmp_path):
    config, _, _ = load_plugins_and_config(write_config(tmp_path, ""))
    section = config.extra["panel"]
    assert (section.port, section.baud, section.size, section.screen_s) == (
        "none",
        19200,
        "20x4",
        5.0,
    )
    sections = {"panel": PanelSection}
    for text, named in (
        ('[panel]\nsize = "21"\n', "panel.size"),
        ('[panel]\nkeys = { A = "LEFT", E = "OK" }\n', "panel.keys.A"),
        ('[panel]\nkeys = { AB = "OK" }\n', "panel.keys"),
        ("[panel]\nscreen_s = 0\n", "panel.screen_s"),
    ):
        with pytest.raises(ConfigError, match=named):
            load_config(write_config(tmp_path, text), sections)


def test_activity_follows_the_events(real_box):
    activity = Activity()
    activity.subscribe(real_box)
    bus = real_box.bus
    for _ in range(3):
        bus.publish("instance.stored", sop_instance_uid=generate_uid(), status="0000")
    bus.publish("instance.stored", sop_instance_uid=generate_uid(), status="0111")
    assert activity.today() == 3
    assert activity.receiving() == 3
    assert activity.state_line() == "receiving 3 img"

    bus.publish("job.started", job=7, kind="burn", attempt=1)
    bus.publish("job.progress", job=7, kind="burn", progress="disc: burning 43%")
    assert activity.state_line() == "burn 43%"
    lines = jobs_lines(real_box, activity, 20, 4)
    assert lines[:2] == ["Jobs: 1 running", "burn 43%"]

    bus.publish("job.failed", job=7, kind="burn", error="no disc in the drive", attempt=3)
    assert activity.jobs() == []
    lines = error_lines(activity, 20, 4)
    assert lines[0].startswith("ERROR ")
    assert " ".join(lines[1:]) == "burn job 7: no disc in the drive"
    assert activity.acknowledge() == "acknowledged: burn job 7"
    assert error_lines(activity, 20, 4) == []
    bus.publish("print.failed", printer="film", error="printer offline")
    assert "printer film: printer offline" in " ".join(error_lines(activity, 20, 4))


def test_short_progress():
    assert short_progress("burn", "disc 1/2: burning 43%") == "burn 43%"
    assert short_progress("forward", "12/40 sent") == "forward 12/40"
    assert short_progress("print", "") == "print"


def test_core_screens_render_for_both_sizes(real_box):
    activity = Activity()
    ae = real_box.config.box.ae_title
    four = identity_lines(real_box, activity, 20, 4)
    assert four[0] == ae and four[2] == "port 11112" and four[3] == "idle"
    two = identity_lines(real_box, activity, 16, 2)
    assert len(two) == 2 and two[0].startswith(ae) and two[1].endswith(":11112")
    assert today_lines(activity, 20, 4)[:2] == ["Received today", "0 images"]
    assert jobs_lines(real_box, activity, 20, 4) == ["Jobs", "none waiting"]


def test_media_and_print_plugins_add_screens_and_actions(real_box, tmp_path):
    screens = {s.name: s for batch in real_box.hook.dicombox_panel_screens(box=real_box)
               for s in batch}  # fmt: skip
    assert {"burner", "printer"} <= set(screens)
    assert screens["burner"].render(20, 4)[:2] == ["Burner", "blank CD-R"]
    assert screens["printer"].render(20, 4)[0] == "Printer pdf"
    actions = {a.label: a for batch in real_box.hook.dicombox_panel_actions(box=real_box)
               for a in batch}  # fmt: skip
    assert {"Burn last study", "Print last study", "Eject disc"} <= set(actions)
    assert actions["Burn last study"].run() == "no study stored"
    assert actions["Print last study"].run() == "no study stored"
    assert actions["Eject disc"].run() == "disc ejected"
    assert actions["Burn last study"].order < actions["Print last study"].order


def test_rotation_skips_empty_screens_and_steps_by_hand():
    now = [0.0]
    said = {"b": []}
    screens = [
        PanelScreen("a", lambda c, r: ["A"]),
        PanelScreen("b", lambda c, r: said["b"]),
        PanelScreen("c", lambda c, r: ["C"]),
        PanelScreen("broken", lambda c, r: 1 / 0),
    ]
    rotation = Rotation(screens, 20, 4, screen_s=5, clock=lambda: now[0])
    assert rotation.frame() == ["A"]
    now[0] = 4.9
    assert rotation.frame() == ["A"]
    now[0] = 5.0
    assert rotation.frame() == ["C"]  # b has nothing to say
    said["b"] = ["B1", "B2", "B3", "B4", "B5"]
    rotation.step(-1)
    assert rotation.frame() == ["B1", "B2", "B3", "B4"]  # cut to the rows
    now[0] = 20
    assert rotation.frame() == ["C"]
    now[0] = 30
    assert rotation.frame() == ["broken", "unavailable: division by zero"]


def test_menu_pages_and_runs():
    ran = []
    actions = [PanelAction(f"Do {n}", lambda n=n: ran.append(n) or f"did {n}") for n in range(3)]
    menu = Menu(actions)
    assert menu.press("OK") is None and not menu.is_open  # OK on a closed menu: caller opens
    menu.open()
    assert menu.lines(2) == ["> Do 0", "  Do 1"]
    menu.press("DOWN")
    menu.press("DOWN")
    assert menu.lines(2) == ["> Do 2"]
    menu.press("DOWN")
    assert menu.selected == 0
    menu.press("UP")
    chosen = menu.press("OK")
    assert chosen is actions[2] and not menu.is_open
    menu.open()
    menu.press("BACK")
    assert not menu.is_open


def settings_for(**values: object) -> PanelSection:
    return PanelSection(**{"port": "loop://", "size": "20x4", **values})  # type: ignore[arg-type]


def test_controller_menu_result_and_backlight_on_the_simulator():
    now = [100.0]
    panel = SerialPanel("loop://")
    activity = Activity()
    actions = [
        PanelAction("Say hello", lambda: "hello from the front panel", order=1),
        PanelAction("Fail", lambda: 1 / 0, order=2),
    ]
    controller = PanelController(
        panel,
        settings_for(backlight_s=60, result_s=3, menu_s=10),
        [PanelScreen("status", lambda c, r: ["STATUS"])],
        actions,
        activity,
        clock=lambda: now[0],
    )
    screen = panel.simulated
    assert screen is not None

    def turn(*keys: str) -> list[str]:
        for key in keys:
            panel.press(key)
        controller.refresh()
        controller.tick()
        controller.tick()  # reads the echo of the frame back onto the simulated screen
        return [line.rstrip() for line in screen.lines]

    assert turn()[0] == "STATUS"
    assert turn("OK")[:2] == ["> Say hello", "  Fail"]
    assert turn("OK")[:2] == ["hello from the front", "panel"]  # the result, wrapped
    now[0] += 3.5
    assert turn()[0] == "STATUS"
    assert turn("OK", "DOWN", "OK")[0] == "failed: division by"
    assert turn("BACK")[0] == "STATUS"  # a key dismisses the result
    assert turn("OK")[0] == "> Say hello"
    now[0] += 11
    assert turn()[0] == "STATUS"  # the menu closed by itself

    now[0] += 61
    turn()
    assert not screen.light  # nobody pressed a key for backlight_s
    assert turn("OK")[0] == "STATUS" and screen.light  # the first press only wakes it
    now[0] += 61
    turn()
    assert not screen.light
    activity.on_event(Event("job.failed", {"job": 1, "kind": "burn", "error": "x"}))
    turn()
    assert screen.light  # an error waiting to be seen keeps the light on
    controller.stop()


def test_the_panel_starts_and_stops_with_the_supervisor(tmp_path, caplog):
    config, pm, infos = load_plugins_and_config(write_config(tmp_path, '[panel]\nport = "log"\n'))
    box = open_box(config, pm, infos, role="supervisor")
    try:
        with caplog.at_level(logging.INFO, logger="dicombox"):
            panel_plugin.dicombox_start(box)
            deadline = time.monotonic() + 5
            while "panel | DICOMBOX" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            panel_plugin.dicombox_stop(box)
        assert "panel | DICOMBOX" in caplog.text
        assert "panel | DICOMBOX | stopped |" in caplog.text
    finally:
        box.close()


def test_no_panel_starts_nothing(real_box, caplog):
    threads = {t.name for t in threading.enumerate()}
    with caplog.at_level(logging.INFO, logger="dicombox"):
        panel_plugin.dicombox_start(real_box)
    assert id(real_box) not in panel_plugin._running
    assert not {t.name for t in threading.enumerate()} - threads
    assert "front panel" not in caplog.text
    panel_plugin.dicombox_stop(real_box)


def test_build_panel_collects_every_plugins_screens_and_actions(real_box):
    controller = build_panel(real_box, settings_for())
    names = [s.name for s in controller.rotation.screens]
    assert names[:5] == ["identity", "error", "today", "jobs", "disk"]
    assert {"burner", "printer"} <= set(names)
    labels = [a.label for a in controller.menu.actions]
    assert labels == [
        "Burn last study",
        "Print last study",
        "Eject disc",
        "Acknowledge error",
        "Show IP address",
    ]
    controller.refresh()
    assert controller.frame()[0] == real_box.config.box.ae_title
    controller.stop()


# --- end to end --------------------------------------------------------------------


def selected_line(screen: MatrixOrbitalScreen) -> str:
    return next((line for line in screen.lines if line.startswith("> ")), "")


def test_a_box_shows_its_ae_title_and_burns_the_last_study_at_a_key(display, make_box, tmp_path):
    # (display first: its pty outlives the box, which says goodbye on it when stopping)
    require("storescu")
    discs = tmp_path / "discs"
    box = make_box(
        f'[panel]\nport = "{display.path}"\nscreen_s = 60\n[media]\ndiscs_dir = "{discs}"\n'
    )
    shown = display.wait_for("DICOMBOX")
    assert f"port {box.port}" in display.wait_for(f"port {box.port}"), shown

    folder = tmp_path / "study"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, 4):
        path = folder / f"{n}.dcm"
        ct_dataset(study, series, n, rows=32, columns=32, patient="PANEL^PAT").save_as(
            path, enforce_file_format=True
        )
        files.append(path)
    assert storescu(box.port, files).returncode == 0
    display.press(b"B")  # DOWN, menu closed: the next screen (the workers' events counted)
    assert "Received today" in display.wait_for("3 images")

    display.press(b"E")  # OK: the menu
    display.wait_for("> ")
    for _ in range(10):
        if "Burn last study" in selected_line(display.screen):
            break
        before = selected_line(display.screen)
        display.press(b"B")  # DOWN
        deadline = time.monotonic() + 5
        while selected_line(display.screen) == before and time.monotonic() < deadline:
            display.read(0.05)
    assert "Burn last study" in selected_line(display.screen), display.screen.text()
    display.press(b"E")  # OK: run it
    result = display.wait_for("queued")
    assert "burn job" in result and "PANEL PAT" in result.replace("\n", " "), result

    (job,) = box.jobs("burn")  # as `dicombox jobs --json` lists it
    assert job["payload"]["items"] == [study]
    done = box.wait_job("burn", "done")
    assert "3 instances burned" in done["progress"], done
    assert list(discs.glob("disc-*.iso"))
    assert box.stop() == 0
    assert display.wait_for("stopped").startswith("DICOMBOX")
