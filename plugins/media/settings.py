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
    """The media plugin: burning discs, writing USB sticks, importing media."""

    burner: str = "simulated"
    """`simulated`: each disc is an ISO file in `discs_dir`. `xorriso`: a real drive at
    `device`. `primera`, `epson`: a disc robot (PTPublisher `.JRQ` or Total Disc Maker
    `.JDF` jobs in its hot folder; the robot loads, burns, verifies and prints); or the
    name of a driver a plugin adds."""
    device: str = "/dev/sr0"
    """The drive, for `xorriso`."""
    hot_folder: str = ""
    """For `burner = "primera"` or `"epson"` (and then required): the disc robot's hot
    folder, the one its software watches."""
    robot_folder: str = ""
    """The same folder as the robot's PC names it (paths in job files); empty: `hot_folder`."""
    robot_timeout_s: float = 3600.0
    """How long to wait for the robot."""
    discs_dir: str = ""
    """Where the simulator puts its discs (empty: `<data_dir>/media/discs`). A file
    `NO_DISC` there empties the tray; a file `BLANKS` holding a number is the stack of
    blank discs left, one taken per disc burned."""
    disc: Literal["CD", "DVD", "DVD-DL", "BD"] = "CD"
    """The simulator's media."""
    disc_capacity_mb: int = 0
    """What one disc holds; `0` = what the drive reports, else `disc`'s size."""
    profile: str = "STD-GEN-CD"
    """Application Profile: `STD-GEN-CD` (Explicit VR LE only), `STD-GEN-DVD-J2K`,
    `STD-GEN-USB-J2K`, `STD-GEN-BD` (JPEG 2000 kept), `STD-GEN-DVD-JPEG` (JPEG kept);
    anything else is converted to Explicit VR LE, never lossy."""
    speed: int = 0
    """Burn speed; `0` = the drive's choice."""
    finalize: bool = True
    """Close the disc; `false` leaves it open for more sessions."""
    verify: bool = True
    """Read the disc back and compare with the image."""
    copies: int = 1
    """Discs per burn (at least 1)."""
    previews: bool = True
    """IHE PDI web content on each disc: `IHE_PDI/INDEX.HTM` with a JPEG preview per series
    (the middle image, rescaled and windowed with numpy, written by Pillow), linked from
    the root INDEX.HTM."""
    deidentify: str = "none"
    """De-identification of exports: `none`; `basic` (PS3.15 Basic Application Level
    Confidentiality Profile: identifying attributes removed or replaced, private tags,
    curves and overlays removed, every instance UID remapped consistently within the
    export); `full` (basic, and every remaining date, person name and free text cleared);
    `reduced` (basic, keeping dates and patient characteristics: the profile's Retain
    Longitudinal Temporal Information and Retain Patient Characteristics options);
    `service` (only the patient identity replaced; UIDs kept). Pixel data is never
    changed: burned-in annotation is not removed."""
    viewer_dir: str = ""
    """A viewer program copied onto each disc as `VIEWER/` with its own file names (Joliet
    and Rock Ridge; the ISO 9660 tree gets generated 8.3 names). Each disc keeps room for
    it. Nothing on the disc starts by itself."""
    viewer_start: str = ""
    """The program inside `viewer_dir` that README.TXT and INDEX.HTM tell the reader to
    start (nothing starts by itself)."""
    retries: int = 2
    """A failed burn (no disc, write error) is tried again on a fresh disc; discs already
    burned are not burned again."""
    idle_s: float = 120.0
    """A route with `burn = true` burns a study once no image has arrived for it this
    long."""
    usb: str = "simulated"
    """`udev`: real USB sticks, found with pyudev (USB or removable block devices with a
    file system; the disk the box runs from never counts), mounted with udisksctl when
    not mounted yet, named by their label or kernel name (`sdb1`). `simulated`: the
    folders below `usb_root`."""
    usb_root: str = ""
    """For `usb = "simulated"`: every folder below it is a plugged-in USB stick (also works
    on a desktop's `/media/<user>`); empty: `<data_dir>/media/usb`."""
    usb_unmount: bool = False
    """On eject, unmount and power the stick off (udisksctl)."""
    usb_profile: str = "STD-GEN-USB-J2K"
    """The profile of USB exports."""
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
