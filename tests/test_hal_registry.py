"""The HAL's registries: a driver per name with its own options, chosen by the
configuration; a plugin's driver (a real wheel, found by its entry point) added through
``dicombox_hal_drivers``, reading its own keys, burning a real study; unknown names
refused with the list of those known."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import pytest
from pydicom.uid import generate_uid

from dicombox.core.config import ConfigError, parse_config
from dicombox.hal.burner import BURNERS, XorrisoBurner, XorrisoOptions
from dicombox.hal.panel import PANELS, SerialPanel
from dicombox.hal.printer import PRINTERS, CupsPrinter, FilePrinter
from dicombox.hal.registry import DriverContext, DriverError, Registry
from dicombox.plugins.media.settings import MediaSection
from dicombox.plugins.panel.settings import PanelSection
from dicombox.plugins.print.settings import PrinterSection
from tests.conftest import require
from tests.support.boxproc import run_cli
from tests.support.peers import storescu
from tests.support.plugin_wheels import build_plugin
from tests.support.synthetic import ct_dataset

# A field plugin with a burner of its own: each disc goes onto a "shelf" (a folder), under
# a label; both are the driver's own keys in [media]. (Braces doubled: str.format.)
SHELF_PLUGIN = """
import shutil
from dataclasses import dataclass
from pathlib import Path

from dicombox.core import hookimpl
from dicombox.hal.burner import BURNERS, MediaInfo

__version__ = "{version}"


@dataclass(frozen=True)
class ShelfOptions:
    shelf_folder: str = ""
    shelf_label: str = "SHELF"

    def validate(self, name):
        if not self.shelf_folder:
            raise ValueError("needs shelf_folder, where the discs go")


class ShelfBurner:
    def __init__(self, options, context):
        self.folder = Path(options.shelf_folder)
        self.label = options.shelf_label
        self.name = f"shelf:{{self.folder}}"
        self.destination = f"the shelf {{self.folder}}"
        self.disc = None

    def media(self):
        return MediaInfo(True, True, 737_280_000, "CD-R")

    def burn(self, iso, label, finalize=True, speed=0, progress=lambda fraction: None):
        number = len(list(self.folder.glob("*.iso"))) + 1
        self.disc = self.folder / f"{{self.label}}-{{number}}.iso"
        shutil.copyfile(iso, self.disc)
        progress(1.0)

    def verify(self, iso):
        return self.disc is not None and self.disc.read_bytes() == Path(iso).read_bytes()

    def eject(self):
        self.disc = None


@hookimpl
def dicombox_hal_drivers():
    return [BURNERS.entry("shelf", ShelfBurner, ShelfOptions)]
"""


@dataclass(frozen=True)
class LampOptions:
    watts: int = 60


def open_lamp(options: LampOptions, context: DriverContext) -> str:
    return f"{context.name} lamp of {options.watts} W"


def test_a_registry_opens_each_driver_with_its_options() -> None:
    lamps: Registry[str] = Registry("lamp")
    lamps.register("bulb", open_lamp, LampOptions)
    lamps.register("bulb", open_lamp, LampOptions)  # the same driver again: no harm
    assert lamps.names() == ["bulb"] and "bulb" in lamps and lamps.config_keys() == {"watts"}
    assert lamps.open("bulb", LampOptions(100), DriverContext(name="desk")) == "desk lamp of 100 W"
    assert lamps.open("bulb") == " lamp of 60 W"  # its options' defaults
    with pytest.raises(DriverError, match="lamp driver 'bulb' is registered already"):
        lamps.register("bulb", lambda options, context: "another", LampOptions)
    with pytest.raises(DriverError, match="takes LampOptions, not XorrisoOptions"):
        lamps.open("bulb", XorrisoOptions())
    with pytest.raises(ValueError, match="unknown lamp driver 'led'; known: bulb"):
        lamps.open("led")
    entry = lamps.entry("led", open_lamp, LampOptions)
    assert (entry.family, entry.name, "led" in lamps) == ("lamp", "led", False)
    entry.register()
    assert lamps.names() == ["bulb", "led"]


def test_the_built_in_drivers_read_their_keys_from_the_section_that_chooses_them(
    tmp_path: Path,
) -> None:
    sections = {"media": MediaSection, "panel": PanelSection, "printer": PrinterSection}
    config = parse_config(
        {
            "media": {"burner": "xorriso", "device": "/dev/sr1", "speed": 4},
            "panel": {"port": "loop://", "size": "16x2"},
            "printer": [
                {"name": "ward", "driver": "cups", "queue": "ward-3"},
                {"name": "films", "folder": str(tmp_path / "films"), "format": "png"},
            ],
        },
        sections,
    )
    media = config.extra["media"]
    burner = BURNERS.open(media.burner, media.burner_options())
    assert isinstance(burner, XorrisoBurner)
    assert (burner.device, burner.speed, burner.destination) == (
        "/dev/sr1",
        4,
        "the drive /dev/sr1",
    )
    panel = config.extra["panel"]
    display = PANELS.open(panel.driver_name, panel.panel_options())
    try:
        assert isinstance(display, SerialPanel) and str(display.size) == "16x2"
    finally:
        display.close()
    ward, films = config.extra["printer"]
    cups = PRINTERS.open(ward.driver, ward.printer_options(), DriverContext(name=ward.name))
    assert isinstance(cups, CupsPrinter) and (cups.queue, cups.name) == ("ward-3", "ward")
    files = PRINTERS.open(films.driver, films.printer_options(), DriverContext(name="films"))
    assert isinstance(files, FilePrinter)
    assert (files.folder, files.fmt) == (tmp_path / "films", "png")


@pytest.mark.parametrize(
    ("section", "table", "message"),
    [
        (
            "media",
            {"burner": "laser"},
            "media.burner = 'laser': expected 'simulated' | 'xorriso' | 'primera' | 'epson'",
        ),
        ("media", {"usb": "floppy"}, "media.usb = 'floppy': expected 'simulated' | 'udev'"),
        ("media", {"shelf_folder": "/x"}, "[media] has unknown key 'shelf_folder'; allowed"),
        ("panel", {"driver": "oled"}, "panel.driver = 'oled': expected 'log' | 'serial'"),
        (
            "printer",
            {"name": "p", "driver": "ipp"},
            "printer.driver = 'ipp': expected 'file' | 'cups' | 'dicom'",
        ),
        ("printer", {"name": "p", "driver": "dicom"}, '[printer] driver = "dicom" needs remote'),
    ],
)
def test_unknown_drivers_and_keys_are_refused_with_those_known(
    section: str, table: dict, message: str
) -> None:
    sections = {"media": MediaSection, "panel": PanelSection, "printer": PrinterSection}
    with pytest.raises(ConfigError) as refused:
        parse_config({section: table}, sections)
    assert message in str(refused.value)


@pytest.fixture
def shelf_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shelf plugin installed as a wheel is, where every dicombox the test starts
    finds it through its entry point (never in this test process)."""
    wheel = build_plugin(
        tmp_path / "build", "0.1", SHELF_PLUGIN, distribution="dicombox-shelf", entry_point="shelf"
    )
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return site


def check(config: Path, text: str) -> str:
    config.write_text(text)
    out = run_cli("config", "check", str(config))
    return f"{out.returncode}: {out.stdout}{out.stderr}"


def test_a_plugins_driver_is_known_to_the_configuration(shelf_plugin: Path, tmp_path: Path):
    config = tmp_path / "box.toml"
    shelf = f'shelf_folder = "{tmp_path}"'
    assert check(config, f'[media]\nburner = "shelf"\n{shelf}\n').startswith("0: "), "refused"
    refused = check(config, '[media]\nburner = "laser"\n')
    assert refused.startswith("1: ")
    assert "expected 'simulated' | 'xorriso' | 'shelf' | 'primera' | 'epson'" in refused
    refused = check(config, '[media]\nburner = "shelf"\nshelf_folder = 5\n')
    assert "media.shelf_folder = 5: expected a string" in refused
    refused = check(config, '[media]\nburner = "shelf"\n')
    assert "[media] burner = 'shelf' needs shelf_folder, where the discs go" in refused
    refused = check(config, f'[plugins]\ndisabled = ["shelf"]\n[media]\nburner = "shelf"\n{shelf}')
    assert refused.startswith("1: ") and "expected 'simulated'" in refused
    assert "'shelf'" not in refused.split("expected")[1]  # a disabled plugin adds nothing


def test_a_plugins_burner_chosen_by_the_configuration_burns_a_study(
    shelf_plugin: Path, make_box, tmp_path: Path
):
    require("storescu")
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    box = make_box(f'[media]\nburner = "shelf"\nshelf_folder = "{shelf}"\nshelf_label = "WARD3"\n')
    study, series = generate_uid(), generate_uid()
    files = []
    for n in (1, 2):
        path = tmp_path / f"{n}.dcm"
        ct_dataset(study, series, n, rows=16, columns=16).save_as(path, enforce_file_format=True)
        files.append(path)
    assert storescu(box.port, files).returncode == 0
    queued = box.cli("burn", study)
    assert queued.returncode == 0 and f"go to the shelf {shelf}" in queued.stdout, queued
    job = box.wait_job("burn", "done")
    assert f"2 instances burned, 1 disc(s): the shelf {shelf}" in job["progress"], job
    (disc,) = shelf.glob("*.iso")
    assert disc.name == "WARD3-1.iso"
    iso = pycdlib.PyCdlib()
    iso.open(str(disc))
    try:
        names = [c.file_identifier() for c in iso.list_children(iso_path="/")]
    finally:
        iso.close()
    assert b"DICOMDIR.;1" in names and b"INDEX.HTM;1" in names
