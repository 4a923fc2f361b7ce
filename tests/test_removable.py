"""USB sticks found through udev: fake udev device records and a real mounts table whose
mount points are folders of the test, so free space is measured for real."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dicombox.hal.registry import DriverContext
from dicombox.hal.removable import (
    REMOVABLE,
    DirectorySticks,
    DirectorySticksOptions,
    NotPresent,
    RemovableError,
    UdevSticks,
)


@dataclass
class FakeDevice:
    """A udev block device as far as UdevSticks reads it."""

    sys_name: str
    properties: dict[str, str]
    attributes: dict[str, bytes] = field(default_factory=dict)
    disk: FakeDevice | None = None

    @property
    def device_node(self) -> str:
        return f"/dev/{self.sys_name}"

    def find_parent(self, subsystem: str, device_type: str | None = None) -> FakeDevice | None:
        return self.disk if (subsystem, device_type) == ("block", "disk") else None


def disk(name: str, bus: str, removable: bool, **props: str) -> FakeDevice:
    return FakeDevice(
        name,
        {"SUBSYSTEM": "block", "DEVTYPE": "disk", "ID_BUS": bus, **props},
        {"removable": b"1\n" if removable else b"0\n"},
    )


def partition(parent: FakeDevice, number: int, label: str = "", **props: str) -> FakeDevice:
    properties = {
        "SUBSYSTEM": "block",
        "DEVTYPE": "partition",
        "ID_BUS": parent.properties["ID_BUS"],
        "ID_FS_USAGE": "filesystem",
        "ID_FS_TYPE": "vfat",
        **({"ID_FS_LABEL": label} if label else {}),
        **props,
    }
    return FakeDevice(f"{parent.sys_name}{number}", properties, disk=parent)


def usb_stick(name: str, label: str = "") -> list[FakeDevice]:
    """A USB stick as udev lists it: the disk, then its partition."""
    whole = disk(name, "usb", removable=True, ID_PART_TABLE_TYPE="dos")
    return [whole, partition(whole, 1, label)]


def write_mounts(table: Path, mounts: dict[str, Path]) -> Path:
    """A mounts table in the kernel's format, spaces escaped as \\040."""
    lines = ["/dev/vda1 / ext4 rw,relatime 0 0", "proc /proc proc rw 0 0"]
    for device, where in mounts.items():
        where.mkdir(parents=True, exist_ok=True)
        escaped = str(where).replace(" ", "\\040")
        lines.append(f"{device} {escaped} vfat rw,nosuid,nodev 0 0")
    table.write_text("\n".join(lines) + "\n")
    return table


def sticks(devices: list[FakeDevice], mounts: Path) -> UdevSticks:
    return UdevSticks(devices=lambda: devices, mounts=mounts)


@pytest.fixture
def no_udisksctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_usb_partition_with_label_is_listed_with_its_mount_point(tmp_path: Path) -> None:
    where = tmp_path / "media" / "KINGSTON"
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": where})
    (volume,) = sticks(usb_stick("sdb", "KINGSTON"), table).list()
    assert volume.name == "KINGSTON" and volume.root == where and volume.free_bytes > 0


def test_usb_partition_without_label_is_named_by_its_kernel_name(tmp_path: Path) -> None:
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": tmp_path / "media" / "5E1F-0A2C"})
    assert [v.name for v in sticks(usb_stick("sdb"), table).list()] == ["sdb1"]


def test_optical_drive_and_sata_disk_are_not_removable_sticks(tmp_path: Path) -> None:
    optical = FakeDevice(
        "sr0",
        {
            "SUBSYSTEM": "block",
            "DEVTYPE": "disk",
            "ID_BUS": "usb",
            "ID_CDROM": "1",
            "ID_FS_USAGE": "filesystem",
            "ID_FS_TYPE": "iso9660",
            "ID_FS_LABEL": "DICOM_DISC",
        },
        {"removable": b"1\n"},
    )
    sata = disk("sda", "ata", removable=False, ID_PART_TABLE_TYPE="gpt")
    data = partition(sata, 1, "DATA", ID_FS_TYPE="ext4")
    table = write_mounts(
        tmp_path / "mounts", {"/dev/sr0": tmp_path / "cd", "/dev/sda1": tmp_path / "data"}
    )
    assert sticks([optical, sata, data], table).list() == []


def test_removable_disk_without_partition_table_is_a_usb_stick(tmp_path: Path) -> None:
    # A card reader on another bus, formatted without a partition table.
    card = disk("mmcblk0", "", removable=True, ID_FS_USAGE="filesystem", ID_FS_LABEL="CARD")
    table = write_mounts(tmp_path / "mounts", {"/dev/mmcblk0": tmp_path / "card"})
    assert [v.name for v in sticks([card], table).list()] == ["CARD"]


def test_usb_mount_point_with_escaped_space_is_decoded(tmp_path: Path) -> None:
    where = tmp_path / "media" / "MY STICK"
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": where})
    assert "\\040" in table.read_text()
    (volume,) = sticks(usb_stick("sdb", "MY STICK"), table).list()
    assert volume.root == where and volume.root.is_dir()


def test_usb_disk_the_box_runs_from_is_not_a_stick(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("/dev/sdb1 /boot/firmware vfat rw 0 0\n/dev/sdb2 / ext4 rw 0 0\n")
    whole = disk("sdb", "usb", removable=True, ID_PART_TABLE_TYPE="dos")
    system = [whole, partition(whole, 1, "bootfs"), partition(whole, 2, "rootfs")]
    assert sticks(system, table).list() == []


def test_two_usb_sticks_get_without_name_names_both(tmp_path: Path) -> None:
    table = write_mounts(
        tmp_path / "mounts",
        {"/dev/sdb1": tmp_path / "media" / "ALPHA", "/dev/sdc1": tmp_path / "media" / "BETA"},
    )
    two = sticks(usb_stick("sdb", "ALPHA") + usb_stick("sdc", "BETA"), table)
    with pytest.raises(RemovableError, match="several USB sticks") as raised:
        two.get()
    assert not isinstance(raised.value, NotPresent)
    assert "ALPHA" in str(raised.value) and "BETA" in str(raised.value)


def test_get_usb_stick_by_label_or_kernel_name(tmp_path: Path) -> None:
    table = write_mounts(
        tmp_path / "mounts",
        {"/dev/sdb1": tmp_path / "media" / "ALPHA", "/dev/sdc1": tmp_path / "media" / "BETA"},
    )
    two = sticks(usb_stick("sdb", "ALPHA") + usb_stick("sdc", "BETA"), table)
    assert two.get("BETA").root == tmp_path / "media" / "BETA"
    assert two.get("sdb1").name == "ALPHA"
    with pytest.raises(NotPresent, match="no USB stick 'GAMMA' is plugged in"):
        two.get("GAMMA")


def test_usb_sticks_sharing_a_label_must_be_named_by_device(tmp_path: Path) -> None:
    table = write_mounts(
        tmp_path / "mounts",
        {"/dev/sdb1": tmp_path / "media" / "USB", "/dev/sdc1": tmp_path / "media" / "USB1"},
    )
    twins = sticks(usb_stick("sdb", "USB") + usb_stick("sdc", "USB"), table)
    with pytest.raises(RemovableError, match=r"called 'USB' \('USB' \(sdb1\), 'USB' \(sdc1\)\)"):
        twins.get("USB")
    assert twins.get("sdc1").root == tmp_path / "media" / "USB1"


@pytest.mark.usefixtures("no_udisksctl")
def test_unmounted_usb_stick_without_udisksctl_is_a_clear_error(tmp_path: Path) -> None:
    table = write_mounts(tmp_path / "mounts", {})
    unmounted = sticks(usb_stick("sdb"), table)
    assert unmounted.list() == []
    expected = "the USB stick sdb1 is not mounted and udisksctl is not installed: mount it first"
    for name in ("", "sdb1"):
        with pytest.raises(RemovableError) as raised:
            unmounted.get(name)
        assert str(raised.value) == expected


@pytest.mark.usefixtures("no_udisksctl")
def test_eject_usb_stick_flushes_and_leaves_it_mounted_without_udisksctl(tmp_path: Path) -> None:
    where = tmp_path / "media" / "KINGSTON"
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": where})
    udev = sticks(usb_stick("sdb", "KINGSTON"), table)
    udev.eject(udev.get())
    assert udev.get().root == where


def test_eject_usb_stick_pulled_out_is_not_present(tmp_path: Path) -> None:
    where = tmp_path / "media" / "KINGSTON"
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": where})
    udev = sticks(usb_stick("sdb", "KINGSTON"), table)
    volume = udev.get()
    where.rmdir()
    with pytest.raises(NotPresent, match="the USB stick 'KINGSTON' was pulled out"):
        udev.eject(volume)


def test_eject_usb_stick_no_longer_in_the_mounts_table_is_not_present(tmp_path: Path) -> None:
    where = tmp_path / "media" / "KINGSTON"
    table = write_mounts(tmp_path / "mounts", {"/dev/sdb1": where})
    udev = sticks(usb_stick("sdb", "KINGSTON"), table)
    volume = udev.get()
    write_mounts(table, {})
    with pytest.raises(NotPresent, match="was pulled out"):
        udev.eject(volume)


def test_usb_discovery_without_pyudev_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyudev", None)  # import pyudev now fails
    with pytest.raises(RemovableError, match="USB discovery needs pyudev and libudev: "):
        UdevSticks().list()


def test_udev_usb_sticks_of_this_machine_list_without_error() -> None:
    try:
        found = UdevSticks().list()
    except RemovableError as exc:
        pytest.skip(str(exc))
    assert isinstance(found, list)


def test_open_usb_sticks_of_each_kind(tmp_path: Path) -> None:
    options = DirectorySticksOptions(usb_root=str(tmp_path), usb_unmount=True)
    simulated = REMOVABLE.open("simulated", options)
    assert isinstance(simulated, DirectorySticks) and simulated.root == tmp_path
    assert simulated.unmount
    by_default = REMOVABLE.open("simulated", context=DriverContext(data_dir=tmp_path))
    assert by_default.root == tmp_path / "media" / "usb" and not by_default.unmount
    assert isinstance(REMOVABLE.open("udev"), UdevSticks)
    with pytest.raises(ValueError, match="unknown removable media driver 'floppy'; known"):
        REMOVABLE.open("floppy")
