"""The [media] configuration section.

``burner`` names a driver of the burners' or the disc robots' registry, ``usb`` one of
the USB sticks'; each driver reads its own keys from ``[media]`` (the built-in ones'
keys are declared here too, so that they keep their types and defaults even while
another driver is chosen), and keys only a plugin's driver reads are kept for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dicombox.core.config import ConfigError, check_choice, check_other_keys, load_part, other_keys
from dicombox.hal.burner import BURNERS, Burner
from dicombox.hal.registry import Registry
from dicombox.hal.removable import REMOVABLE
from dicombox.hal.robot import ROBOTS


def burner_registry(name: str) -> Registry[Burner]:
    """Where ``[media] burner`` finds its driver: among the burners, else the robots."""
    return BURNERS if name in BURNERS else ROBOTS


def burner_names() -> list[str]:
    return [*BURNERS.names(), *ROBOTS.names()]


@dataclass(frozen=True)
class MediaSection:
    # simulated: ISO files in discs_dir; xorriso: a drive; primera, epson: a disc robot's
    # hot folder (PTPublisher .JRQ, Epson Total Disc Maker .JDF jobs); or a plugin's driver
    burner: str = "simulated"
    device: str = "/dev/sr0"  # for burner = "xorriso"
    hot_folder: str = ""  # for a robot: the folder its software watches
    robot_folder: str = ""  # that folder as the robot's PC names it ("" = hot_folder)
    robot_timeout_s: float = 3600.0
    discs_dir: str = ""  # for the simulator: where burned discs go ("" = <data_dir>/media/discs)
    disc: Literal["CD", "DVD", "DVD-DL", "BD"] = "CD"  # the simulator's media
    disc_capacity_mb: int = 0  # what one disc holds; 0 = what the drive says, or `disc`'s
    profile: str = "STD-GEN-CD"  # the Application Profile of the file-set
    speed: int = 0  # 0 = the drive's choice
    finalize: bool = True  # close the disc (no later sessions)
    verify: bool = True  # read the disc back and compare
    copies: int = 1
    previews: bool = True  # IHE PDI web content: a page of JPEG previews per disc
    # none | basic (PS3.15 Basic Profile) | full | reduced (keeps dates and patient
    # characteristics) | service (only the patient identity replaced)
    deidentify: str = "none"
    # A viewer program for the patient's PC, copied onto each disc as VIEWER/ with its
    # own file names (Joliet and Rock Ridge); viewer_start names its program, inside
    # viewer_dir, in README.TXT and INDEX.HTM. Nothing on the disc starts by itself.
    viewer_dir: str = ""
    viewer_start: str = ""
    retries: int = 2  # a failed burn is tried again on a fresh disc
    idle_s: float = 120.0  # a [[route]] with burn = true burns a study idle this long
    # USB sticks: "udev" finds real ones (pyudev; mounted with udisksctl when needed);
    # "simulated": each folder below usb_root is a plugged-in stick (also a desktop's
    # /media/<user>); usb_root "" = <data_dir>/media/usb.
    usb: str = "simulated"
    usb_root: str = ""
    usb_unmount: bool = False  # unmount and power the stick off on eject (udisksctl)
    usb_profile: str = "STD-GEN-USB-J2K"
    driver_keys: dict[str, Any] = other_keys()  # the keys of plugins' drivers

    def burner_options(self, name: str = "media") -> Any:
        """The options of the burner's driver, from this section."""
        options_type = burner_registry(self.burner).options_type(self.burner)
        return load_part(options_type, self, name, chosen=f"burner = {self.burner!r}")

    def sticks_options(self, name: str = "media") -> Any:
        """The options of the USB sticks' driver, from this section."""
        options_type = REMOVABLE.options_type(self.usb)
        return load_part(options_type, self, name, chosen=f"usb = {self.usb!r}")

    def validate(self, name: str) -> None:
        check_choice(f"{name}.burner", self.burner, burner_names())
        check_choice(f"{name}.usb", self.usb, REMOVABLE.names())
        drivers = BURNERS.config_keys() | ROBOTS.config_keys() | REMOVABLE.config_keys()
        check_other_keys(self, name, drivers)
        self.burner_options(name)
        self.sticks_options(name)
        from dicombox.plugins.media.deidentify import LEVELS

        if self.deidentify not in LEVELS:
            raise ConfigError(
                f"[{name}] deidentify = {self.deidentify!r}: one of {', '.join(LEVELS)}"
            )
        if self.viewer_dir and not Path(self.viewer_dir).is_dir():
            raise ConfigError(f"[{name}] viewer_dir = {self.viewer_dir!r} is not a folder")
        if self.viewer_start and not (Path(self.viewer_dir) / self.viewer_start).is_file():
            raise ConfigError(
                f"[{name}] viewer_start = {self.viewer_start!r} is not a file in viewer_dir"
            )
        if self.copies < 1:
            raise ConfigError(f"[{name}] copies = {self.copies}: at least 1")
