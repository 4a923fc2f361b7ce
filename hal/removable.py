"""Removable media (USB sticks) behind a small interface: a simulator and a udev driver.

Both drivers offer ``list() -> list[Volume]``, ``get(name="") -> Volume`` and
``eject(volume)``.

``DirectorySticks`` is the simulator and the plain driver alike: every folder below
its root is a stick that is plugged in (the way a desktop mounts them under
/media/<user>/<label>). ``UdevSticks`` asks udev which block devices are USB sticks
and finds where they are mounted in /proc/mounts. Ejecting flushes everything
written to the device and, on a real system, unmounts and powers the stick off
through udisksctl when it is there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

from dicombox.hal.registry import DriverContext, NoOptions, Registry

PROC_MOUNTS = Path("/proc/mounts")

# Long enough for the file-system check udisks may run on a stick pulled out untidily.
UDISKS_TIMEOUT_S = 60


_T = TypeVar("_T")


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
        return [_volume(p.name, p) for p in sorted(self.root.iterdir()) if p.is_dir()]

    def get(self, name: str = "") -> Volume:
        """The stick called ``name``, or the only one plugged in."""
        sticks = self.list()
        if name:
            found = [v for v in sticks if v.name == name]
            if not found:
                raise NotPresent(f"no USB stick {name!r} is plugged in")
            return found[0]
        return _the_only(sticks, lambda v: v.name)

    def eject(self, volume: Volume) -> None:
        """Make what was written safe to pull out."""
        if not volume.root.is_dir():
            raise NotPresent(f"the USB stick {volume.name!r} was pulled out")
        os.sync()
        if self.unmount and shutil.which("udisksctl"):
            _unmount_and_power_off(_device_of(volume.root))


class SysAttributes(Protocol):
    """The sysfs attributes of a device, as pyudev's ``Device.attributes`` gives them."""

    def get(self, attribute: str, default: bytes | None = None) -> bytes | str | None: ...


class BlockDevice(Protocol):
    """The part of a ``pyudev.Device`` that ``UdevSticks`` reads."""

    @property
    def properties(self) -> Mapping[str, str]: ...

    @property
    def attributes(self) -> SysAttributes: ...

    @property
    def sys_name(self) -> str: ...

    @property
    def device_node(self) -> str | None: ...

    def find_parent(self, subsystem: str, device_type: str | None = None) -> BlockDevice | None: ...


@dataclass(frozen=True)
class _Stick:
    name: str  # the file-system label, else the kernel name
    kernel_name: str  # sdb1
    device: str  # /dev/sdb1
    root: Path | None  # None: not mounted
    why_unusable: str = ""  # set when root is None

    def describe(self) -> str:
        if self.name == self.kernel_name:
            return self.kernel_name
        return f"{self.name!r} ({self.kernel_name})"


class UdevSticks:
    """The USB sticks udev knows of, mounted where the mounts table says.

    A stick is a block device carrying a file system (a partition, or a whole disk
    without a partition table) on the USB bus or on a disk marked removable; optical
    drives are not sticks, nor is a disk the box runs from (mounted at / or /boot).

    A stick that is not mounted is mounted through udisksctl when it is installed.
    One that stays unmounted has no folder to write to, so ``list()`` leaves it out
    (its ``Volume`` would have no root); ``get()`` still counts it, so naming it, or
    having it as the only stick, gives an error that says why it cannot be used
    instead of "no USB stick is plugged in".
    """

    def __init__(
        self,
        devices: Callable[[], Iterable[BlockDevice]] | None = None,
        mounts: Path = PROC_MOUNTS,
    ) -> None:
        self.devices = devices or udev_block_devices
        self.mounts = mounts

    def list(self) -> list[Volume]:
        return [_volume(s.name, s.root) for s in self._sticks() if s.root is not None]

    def get(self, name: str = "") -> Volume:
        """The stick with label or kernel name ``name``, or the only one plugged in."""
        sticks = self._sticks()
        stick = self._named(sticks, name) if name else _the_only(sticks, _Stick.describe)
        if stick.root is None:
            raise RemovableError(stick.why_unusable)
        return _volume(stick.name, stick.root)

    def eject(self, volume: Volume) -> None:
        """Make what was written safe to pull out: flush, unmount, power off."""
        pulled_out = NotPresent(f"the USB stick {volume.name!r} was pulled out")
        if not volume.root.is_dir():
            raise pulled_out
        try:
            device = _device_of(volume.root, self.mounts)
        except NotPresent:
            raise pulled_out from None
        os.sync()
        _unmount_and_power_off(device)

    @staticmethod
    def _named(sticks: list[_Stick], name: str) -> _Stick:
        found = [s for s in sticks if name in (s.name, s.kernel_name)]
        if not found:
            raise NotPresent(f"no USB stick {name!r} is plugged in")
        if len(found) > 1:
            # Sticks of one make often share their factory label.
            names = ", ".join(s.describe() for s in found)
            raise RemovableError(
                f"several USB sticks are called {name!r} ({names}): name one by its device"
            )
        return found[0]

    def _sticks(self) -> list[_Stick]:
        candidates = [d for d in self.devices() if _is_stick(d) and d.device_node]
        mounted = _mount_points(self.mounts)
        unmounted = [d for d in candidates if _node(d) not in mounted]
        mount_errors: dict[str, str] = {}
        if unmounted and shutil.which("udisksctl"):
            mount_errors = {_node(d): _udisks_mount(_node(d)) for d in unmounted}
            mounted = _mount_points(self.mounts)
        sticks = [self._stick(d, mounted.get(_node(d)), mount_errors) for d in candidates]
        return [s for s in sticks if s.root is None or not _is_system_mount(s.root)]

    def _stick(
        self, device: BlockDevice, root: Path | None, mount_errors: dict[str, str]
    ) -> _Stick:
        name = device.properties.get("ID_FS_LABEL") or device.sys_name
        stick = _Stick(name, device.sys_name, _node(device), root)
        if root is None:
            why = self._why_unmounted(stick, mount_errors.get(stick.device))
            stick = replace(stick, why_unusable=why)
        return stick

    def _why_unmounted(self, stick: _Stick, mount_error: str | None) -> str:
        what = f"the USB stick {stick.describe()} is not mounted"
        if mount_error is None:
            return f"{what} and udisksctl is not installed: mount it first"
        return f"{what} and udisksctl could not mount it: " + (
            mount_error or f"it is not in {self.mounts} afterwards"
        )


class Sticks(Protocol):
    """What every driver of USB sticks offers."""

    def list(self) -> list[Volume]: ...

    def get(self, name: str = "") -> Volume: ...

    def eject(self, volume: Volume) -> None: ...


@dataclass(frozen=True)
class DirectorySticksOptions:
    usb_root: str = ""  # each folder below it is a stick ("" = <data_dir>/media/usb)
    usb_unmount: bool = False  # unmount and power the stick off on eject (udisksctl)


def _open_directory(options: DirectorySticksOptions, context: DriverContext) -> DirectorySticks:
    root = Path(options.usb_root) if options.usb_root else context.data_dir / "media" / "usb"
    return DirectorySticks(root, options.usb_unmount)


def _open_udev(options: NoOptions, context: DriverContext) -> UdevSticks:
    # Real sticks are always unmounted and powered off on eject.
    return UdevSticks()


REMOVABLE: Registry[Sticks] = Registry("removable media")
REMOVABLE.register("simulated", _open_directory, DirectorySticksOptions)
REMOVABLE.register("udev", _open_udev)


def udev_block_devices() -> list[BlockDevice]:
    """Every block device udev knows of."""
    try:
        # Imported here so that the simulator works where udev does not exist.
        import pyudev

        return list(pyudev.Context().list_devices(subsystem="block"))
    except (ImportError, OSError) as exc:
        raise RemovableError(f"USB discovery needs pyudev and libudev: {exc}") from exc


def _is_stick(device: BlockDevice) -> bool:
    props = device.properties
    if props.get("SUBSYSTEM") != "block" or props.get("ID_FS_USAGE") != "filesystem":
        return False
    disk = _disk_of(device)
    if disk is None or _is_optical(device) or _is_optical(disk):
        return False
    return props.get("ID_BUS") == "usb" or _text(disk.attributes.get("removable")) == "1"


def _disk_of(device: BlockDevice) -> BlockDevice | None:
    """The whole disk a file system is on: the partition's disk, or the disk itself when
    it carries the file system directly (no partition table)."""
    kind = device.properties.get("DEVTYPE")
    if kind == "partition":
        return device.find_parent("block", "disk")
    if kind == "disk" and not device.properties.get("ID_PART_TABLE_TYPE"):
        return device
    return None


def _is_optical(device: BlockDevice) -> bool:
    return device.properties.get("ID_CDROM") == "1"


def _is_system_mount(root: Path) -> bool:
    """A box booted from a USB disk must not offer its own system as a stick."""
    return root == Path("/") or root.is_relative_to("/boot")


def _node(device: BlockDevice) -> str:
    return device.device_node or ""


def _text(value: bytes | str | None) -> str:
    # pyudev gives sysfs attributes as bytes.
    return value.decode(errors="replace").strip() if isinstance(value, bytes) else value or ""


def _volume(name: str, root: Path) -> Volume:
    return Volume(name, root, shutil.disk_usage(root).free)


def _the_only(sticks: list[_T], describe: Callable[[_T], str]) -> _T:
    if not sticks:
        raise NotPresent("no USB stick is plugged in")
    if len(sticks) > 1:
        names = ", ".join(describe(s) for s in sticks)
        raise RemovableError(f"several USB sticks are plugged in ({names}): name one")
    return sticks[0]


def _mount_entries(table: Path) -> Iterator[tuple[str, Path]]:
    """(device, mount point) of each line of a mounts table such as /proc/mounts."""
    # The kernel writes names as raw bytes; surrogateescape keeps non-UTF-8 ones intact.
    with open(table, encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 2:
                yield _unescape(fields[0]), Path(_unescape(fields[1]))


def _unescape(field: str) -> str:
    """Undo the octal escapes (\\040 for a space) the kernel writes in mounts tables."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_points(table: Path) -> dict[str, Path]:
    """Where each device is mounted (its first mount: later ones are usually binds)."""
    points: dict[str, Path] = {}
    for device, where in _mount_entries(table):
        points.setdefault(device, where)
    return points


def _device_of(mount_point: Path, table: Path = PROC_MOUNTS) -> str:
    for device, where in _mount_entries(table):
        if where == mount_point:
            return device
    raise NotPresent(f"{mount_point} is not a mounted stick")


def _udisks_mount(device: str) -> str:
    """Mount ``device`` through udisks; the error, or "" when it worked."""
    try:
        done = subprocess.run(
            ["udisksctl", "mount", "-b", device, "--no-user-interaction"],
            capture_output=True,
            text=True,
            timeout=UDISKS_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"udisksctl did not answer within {UDISKS_TIMEOUT_S} s"
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _unmount_and_power_off(device: str) -> None:
    # Failures are not raised: os.sync() already flushed what was written, so the
    # stick is safe to pull even if, say, a file manager keeps it from unmounting.
    if not shutil.which("udisksctl"):
        return
    for verb in ("unmount", "power-off"):
        try:
            subprocess.run(
                ["udisksctl", verb, "-b", device],
                check=False,
                capture_output=True,
                timeout=UDISKS_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return
