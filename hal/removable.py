"""Removable media (USB sticks) behind a small interface, with a simulator.

``DirectorySticks`` is the simulator and the plain driver alike: every folder below
its root is a stick that is plugged in (the way a desktop mounts them under
/media/<user>/<label>). Ejecting flushes everything written to the device and, on a
real system, unmounts and powers the stick off through udisksctl when it is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class RemovableError(Exception):
    """An operator-readable problem with a stick."""


class NotPresent(RemovableError):
    """The stick is not (or no longer) plugged in."""


@dataclass(frozen=True)
class Volume:
    name: str
    root: Path
    free_bytes: int


class DirectorySticks:
    def __init__(self, root: Path, unmount: bool = False) -> None:
        self.root = root
        self.unmount = unmount  # real sticks: unmount and power off on eject

    def list(self) -> list[Volume]:
        if not self.root.is_dir():
            return []
        return [self._volume(p) for p in sorted(self.root.iterdir()) if p.is_dir()]

    def get(self, name: str = "") -> Volume:
        """The stick called ``name``, or the only one plugged in."""
        sticks = self.list()
        if name:
            found = [v for v in sticks if v.name == name]
            if not found:
                raise NotPresent(f"no USB stick {name!r} is plugged in")
            return found[0]
        if not sticks:
            raise NotPresent("no USB stick is plugged in")
        if len(sticks) > 1:
            names = ", ".join(v.name for v in sticks)
            raise RemovableError(f"several USB sticks are plugged in ({names}): name one")
        return sticks[0]

    def eject(self, volume: Volume) -> None:
        """Make what was written safe to pull out."""
        if not volume.root.is_dir():
            raise NotPresent(f"the USB stick {volume.name!r} was pulled out")
        os.sync()
        if self.unmount and shutil.which("udisksctl"):
            device = _device_of(volume.root)
            for verb in ("unmount", "power-off"):
                subprocess.run(["udisksctl", verb, "-b", device], check=False, capture_output=True)

    def _volume(self, path: Path) -> Volume:
        return Volume(path.name, path, shutil.disk_usage(path).free)


def _device_of(mount_point: Path) -> str:
    with open("/proc/mounts") as mounts:
        for line in mounts:
            device, where, *_ = line.split()
            if Path(where) == mount_point:
                return device
    raise NotPresent(f"{mount_point} is not a mounted stick")
