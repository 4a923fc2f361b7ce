"""The [media] configuration section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class MediaSection:
    # simulated: ISO files in discs_dir; xorriso: a drive; primera, epson: a disc robot's
    # hot folder (PTPublisher .JRQ, Epson Total Disc Maker .JDF jobs)
    burner: Literal["simulated", "xorriso", "primera", "epson"] = "simulated"
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
    usb: Literal["simulated", "udev"] = "simulated"
    usb_root: str = ""
    usb_unmount: bool = False  # unmount and power the stick off on eject (udisksctl)
    usb_profile: str = "STD-GEN-USB-J2K"

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

        if self.burner in ("primera", "epson") and not self.hot_folder:
            raise ConfigError(f"[{name}] burner = {self.burner!r} needs hot_folder, the robot's")
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
