"""Boot the appliance image under QEMU and C-ECHO the box through a forwarded port.

    .venv/bin/python image/boot_test.py [--image image/build/dicombox.img] [--timeout 300]

The image boots as it would on a machine, once with UEFI firmware (OVMF, then systemd-boot)
and once with a legacy BIOS (SeaBIOS, then SYSLINUX), each time from the EFI system
partition's kernel and initramfs. Each boot is a first boot from a fresh copy-on-write
overlay, so the image file stays as built; the overlay is larger than the image, as a real
disk would be, and the data partition has to grow into the difference.

QEMU's user network forwards a free port on 127.0.0.1 to the guest's port 104. The test
C-ECHOes that port until the box answers; the boot time is from QEMU's start to that first
answer. It then presses the power button (ACPI, through QMP) and waits for the guest to
power off, and checks from the overlay that the data partition and its file system grew.
The serial consoles are written to image/build/boot-test-{uefi,bios}.log. KVM is used when
/dev/kvm can be opened, else QEMU emulates (TCG). Exit 0 when all of it passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

HERE = Path(__file__).resolve().parent
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# KVM: the host's CPU, less the ARCH_CAPABILITIES MSR, which nested hypervisors may refuse
# to set (QEMU then aborts); the guest only loses a hint about speculation mitigations.
CPU = {"kvm": "host,-arch-capabilities", "tcg": "max"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # systemd colours its status lines
# what the serial console shows, in boot order: the first time each appears is reported
MILESTONES = [
    ("boot loader", re.compile(r"BdsDxe|SYSLINUX")),
    ("kernel", re.compile(r"Linux version")),
    ("systemd", re.compile(r"Welcome to")),
    ("data partition mounted", re.compile(r"Mounted var-lib-dicombox\.mount")),
    ("login prompt", re.compile(r"login:")),
]
# QEMU's words when KVM cannot run the guest's code (seen with OVMF and SYSLINUX under some
# nested hypervisors), or a console still silent after this long: the boot is then tried
# again without KVM
KVM_FAILED = "KVM internal error"
KVM_SILENT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kvm_usable() -> bool:
    try:
        with open("/dev/kvm", "r+b"):
            return True
    except OSError:
        return False


def c_echo(port: int, called_ae: str) -> bool:
    """One association, one C-ECHO: True when the box answered Success."""
    ae = AE(ae_title="BOOTTEST")
    ae.add_requested_context(Verification)
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


class Qmp:
    """The smallest QMP client: connect, negotiate, send one command."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rw")
        self.file.readline()  # greeting
        self.command("qmp_capabilities")

    def command(self, name: str) -> dict:
        self.file.write(json.dumps({"execute": name}) + "\n")
        self.file.flush()
        while True:  # skip asynchronous events until the answer
            reply = json.loads(self.file.readline())
            if "return" in reply or "error" in reply:
                return reply

    def close(self) -> None:
        self.sock.close()


def read_disk(overlay: Path, first_sector: int, sectors: int, workdir: Path) -> bytes:
    """Sectors of the overlay as the guest sees them (qemu-img reads through to the image).

    The window is a raw view at an offset: qemu-img dd's own skip= has counted count= from
    the start of the disk in some versions.
    """
    out = workdir / "sectors.bin"
    out.unlink(missing_ok=True)
    view = {
        "driver": "raw",
        "offset": first_sector * 512,
        "size": sectors * 512,
        "file": {"driver": "qcow2", "file": {"driver": "file", "filename": str(overlay)}},
    }
    subprocess.run(
        ["qemu-img", "dd", "-O", "raw", "bs=512", f"count={sectors}",
         f"if=json:{json.dumps(view)}", f"of={out}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def data_partition(disk: Path, fmt: str, workdir: Path) -> tuple[int, int, int]:
    """(first sector, sectors, file system bytes) of the dicombox-data partition."""
    if fmt == "raw":
        with open(disk, "rb") as f:

            def read(first: int, count: int) -> bytes:
                f.seek(first * 512)
                return f.read(count * 512)

            return _data_partition(read)
    return _data_partition(lambda first, count: read_disk(disk, first, count, workdir))


def _data_partition(read: Callable[[int, int], bytes]) -> tuple[int, int, int]:
    header = read(1, 1)
    if header[:8] != b"EFI PART":
        raise RuntimeError("no GPT on the disk")
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    table = read(entries_lba, (count * size + 511) // 512)
    for i in range(count):
        entry = table[i * size : (i + 1) * size]
        name = entry[56:128].decode("utf-16-le").rstrip("\0")
        if name == "dicombox-data":
            first, last = struct.unpack_from("<QQ", entry, 32)
            sb = read(first + 2, 2)  # the ext4 superblock: 1024 bytes in
            blocks_lo, log_block = struct.unpack_from("<I", sb, 4)[0], sb[24]
            blocks_hi = struct.unpack_from("<I", sb, 0x150)[0]
            fs_bytes = ((blocks_hi << 32) | blocks_lo) * (1024 << log_block)
            return first, last - first + 1, fs_bytes
    raise RuntimeError("no dicombox-data partition")


def read_console(log: Path) -> str:
    return ANSI.sub("", log.read_text(errors="replace")) if log.exists() else ""


def boot(args: argparse.Namespace, firmware: str, accel: str, work: Path) -> int | None:
    """One first boot of the image; 0 passed, 1 failed, None: KVM could not run it."""
    log = args.log_dir / f"boot-test-{firmware}.log"
    log.unlink(missing_ok=True)
    overlay, qmp_path = work / f"{firmware}.qcow2", work / f"{firmware}.qmp"
    overlay.unlink(missing_ok=True)
    image_mb = args.image.stat().st_size // 2**20
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
         "-b", str(args.image.resolve()), str(overlay), f"{image_mb + args.grow_mb}M"],
        check=True,
    )  # fmt: skip
    if firmware == "uefi":
        vars_fd = work / "vars.fd"
        shutil.copyfile(OVMF_VARS, vars_fd)
        firmware_args = [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
        ]  # fmt: skip
    else:
        firmware_args = []  # QEMU's own SeaBIOS
    port = free_port()
    cmd = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "q35", "-accel", accel, "-cpu", CPU[accel],
        "-smp", str(args.cpus), "-m", args.memory, *firmware_args,
        "-drive", f"if=virtio,format=qcow2,file={overlay},cache=unsafe",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:104",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no PXE ROM needed
        "-device", "virtio-rng-pci",
        "-chardev", f"file,id=serial0,path={log}", "-serial", "chardev:serial0",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
    ]  # fmt: skip
    print(f"boot test ({firmware}): QEMU with {accel}, 127.0.0.1:{port} -> :104, console in {log}")
    qemu_out = work / f"{firmware}.qemu.log"
    started = time.monotonic()
    with open(qemu_out, "wb") as out:
        qemu = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    seen: dict[str, float] = {}
    booted_after = None
    try:
        while time.monotonic() - started < args.timeout:
            console = read_console(log)
            if accel == "kvm" and (
                KVM_FAILED in qemu_out.read_text(errors="replace")
                or (not console and time.monotonic() - started > KVM_SILENT_S)
            ):
                print(f"boot test ({firmware}): KVM cannot run this guest here")
                return None
            if qemu.poll() is not None:
                print(qemu_out.read_text(errors="replace"), file=sys.stderr)
                break
            for name, marker in MILESTONES:
                if name not in seen and marker.search(console):
                    seen[name] = time.monotonic() - started
            if c_echo(port, args.ae_title):
                booted_after = time.monotonic() - started
                break
            time.sleep(0.5)
        for name, at in sorted(seen.items(), key=lambda item: item[1]):
            print(f"  {at:6.1f} s  {name}")
        if booted_after is None:
            print(f"boot test ({firmware}): FAILED, no C-ECHO answer in {args.timeout:.0f} s")
            tail = read_console(log).splitlines()[-40:]
            print("\n".join(["--- last lines of the serial console:", *tail]))
            return 1
        print(f"  {booted_after:6.1f} s  C-ECHO answered (AE {args.ae_title})")
        print(f"boot test ({firmware}): boot time {booted_after:.1f} s (QEMU start to C-ECHO)")

        # the power button; systemd stops the box and powers off
        pressed = time.monotonic()
        qmp = Qmp(qmp_path)
        qmp.command("system_powerdown")
        qmp.close()
        try:
            qemu.wait(timeout=120)
        except subprocess.TimeoutExpired:
            print(f"boot test ({firmware}): FAILED, no power-off within 120 s of ACPI")
            return 1
        print(f"boot test ({firmware}): powered off {time.monotonic() - pressed:.1f} s after ACPI")
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()

    _, image_sectors, image_fs_bytes = data_partition(args.image, "raw", work)
    _, sectors, fs_bytes = data_partition(overlay, "qcow2", work)
    grown = f"{image_sectors // 2048} MiB -> {sectors // 2048} MiB"
    fs = f"file system {image_fs_bytes // 2**20} MiB -> {fs_bytes // 2**20} MiB"
    if sectors <= image_sectors or fs_bytes < sectors * 512 - 2**20:
        print(f"boot test ({firmware}): FAILED, the data partition did not grow ({grown}, {fs})")
        return 1
    print(f"boot test ({firmware}): data partition grew to the disk's end ({grown}, {fs})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=HERE / "build" / "dicombox.img")
    parser.add_argument(
        "--firmware", default="uefi,bios", help="boots to test, in order: uefi, bios or both"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to first C-ECHO")
    parser.add_argument("--memory", default="1024", help="guest memory in MiB")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--grow-mb", type=int, default=1024, help="overlay size beyond image")
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--ae-title", default="DICOMBOX", help="the box's AE title")
    parser.add_argument("--log-dir", type=Path, default=HERE / "build")
    args = parser.parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # refused tries are expected

    firmwares = [f.strip() for f in args.firmware.split(",") if f.strip()]
    if not firmwares or set(firmwares) - {"uefi", "bios"}:
        sys.exit(f"boot test: --firmware takes uefi, bios or both, not {args.firmware!r}")
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            sys.exit(f"boot test: {tool} is missing (make image-test installs it)")
    needed = [args.image, *((OVMF_CODE, OVMF_VARS) if "uefi" in firmwares else ())]
    for path in needed:
        if not path.exists():
            sys.exit(f"boot test: {path} is missing")
    accel = args.accel if args.accel != "auto" else ("kvm" if kvm_usable() else "tcg")
    args.log_dir.mkdir(parents=True, exist_ok=True)

    results = {}
    with tempfile.TemporaryDirectory(prefix="boot-test-", dir=args.log_dir) as tmp:
        for firmware in firmwares:
            result = boot(args, firmware, accel, Path(tmp))
            if result is None and args.accel == "auto":
                result = boot(args, firmware, "tcg", Path(tmp))
            results[firmware] = result == 0
    failed = [firmware for firmware, ok in results.items() if not ok]
    print(f"boot test: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
