"""ISO mastering (read back by pycdlib and by xorriso) and the burner HAL: the simulator,
real xorriso on a stdio pseudo-drive, and fake xorriso scripts for a drive's failures."""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
from pathlib import Path

import pycdlib
import pytest

from dicombox.hal.burner import (
    BURNERS,
    BurnerError,
    DiscTooSmall,
    DriveGone,
    MediaInfo,
    NoMedia,
    SimulatedBurner,
    SimulatedBurnerOptions,
    XorrisoBurner,
    parse_progress,
    parse_toc,
)
from dicombox.plugins.media.iso import CAPACITY, iso_size_estimate, master_iso
from tests.conftest import require

FILES = [
    "DICOMDIR",
    "README.TXT",
    "DICOM/P0000001/S0000001/I0000001",
    "DICOM/P0000001/S0000001/I0000002",
    "DICOM/P0000001/S0000002/I0000001",
    "DICOM/P0000002/S0000001/I0000001",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "fileset"
    for i, name in enumerate(FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1000 + 2048 * i + i))  # sizes off sector boundaries
    (root / "DICOM/P0000001/S0000001/I0000003").write_bytes(b"x" * 4096)  # exactly 2 sectors
    return root


def source_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def read_with_pycdlib(iso_file: Path, joliet: bool = False) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_file))
    try:
        key = "joliet_path" if joliet else "iso_path"
        found = {}
        for top, _, files in iso.walk(**{key: "/"}):
            for name in files:
                data = io.BytesIO()
                iso.get_file_from_iso_fp(data, **{key: f"{top.rstrip('/')}/{name}"})
                plain = name.removesuffix(";1").removesuffix(".")
                found[f"{top.rstrip('/')}/{plain}".lstrip("/")] = data.getvalue()
        return found
    finally:
        iso.close()


def xorriso(*args: str) -> str:
    done = subprocess.run(["xorriso", *args], capture_output=True, text=True, check=True)
    return done.stdout


# --- mastering ---------------------------------------------------------------------


def test_master_iso_reads_back_with_pycdlib(tree: Path, tmp_path: Path) -> None:
    iso = tmp_path / "disc.iso"
    calls: list[tuple[int, int]] = []
    size = master_iso(tree, iso, "dicombox: study 1", progress=lambda d, t: calls.append((d, t)))

    assert size == iso.stat().st_size and size % 2048 == 0
    assert read_with_pycdlib(iso) == source_files(tree)
    total = len(source_files(tree))
    assert calls == [(n, total) for n in range(1, total + 1)]  # once per file, in order

    check = pycdlib.PyCdlib()
    check.open(str(iso))
    try:
        assert check.pvd.volume_identifier.rstrip() == b"DICOMBOX__STUDY_1"
        names = [name for _, _, files in check.walk(iso_path="/") for name in files]
        assert "DICOMDIR.;1" in names and "README.TXT;1" in names  # Ecma-119 identifiers
    finally:
        check.close()


def test_master_iso_reads_back_with_xorriso(tree: Path, tmp_path: Path) -> None:
    require("xorriso")
    iso = tmp_path / "disc.iso"
    master_iso(tree, iso, "STUDY", joliet=True)

    listed = xorriso("-indev", str(iso), "-find", "/", "-type", "f").split()
    assert sorted(line.strip("'").lstrip("/") for line in listed) == sorted(source_files(tree))

    out = tmp_path / "extracted"
    xorriso("-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out))
    assert source_files(out) == source_files(tree)

    assert "Volume Id    : STUDY" in xorriso("-indev", str(iso), "-pvd_info")
    assert read_with_pycdlib(iso, joliet=True) == source_files(tree)


def test_volume_id_is_sanitized(tree: Path, tmp_path: Path) -> None:
    iso = tmp_path / "disc.iso"
    master_iso(tree, iso, "Müller, Hans / CT thorax 2024-01-02 (long name)")
    check = pycdlib.PyCdlib()
    check.open(str(iso))
    try:
        volume_id = check.pvd.volume_identifier.decode().rstrip()
    finally:
        check.close()
    assert len(volume_id) == 32 and set(volume_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@pytest.mark.parametrize(
    "bad",
    ["DICOM/P0000001/S0000001/i0000009", "LONGNAME9", "README.HTML", "DICOM/A-B/I0000001"],
)
def test_names_iso_9660_cannot_hold_are_refused(tree: Path, tmp_path: Path, bad: str) -> None:
    (tree / bad).parent.mkdir(parents=True, exist_ok=True)
    (tree / bad).write_bytes(b"x")
    with pytest.raises(ValueError, match="ISO 9660"):
        master_iso(tree, tmp_path / "disc.iso", "STUDY")
    assert not (tmp_path / "disc.iso").exists()


def test_directories_deeper_than_eight_levels_are_refused(tmp_path: Path) -> None:
    deep = tmp_path / "fileset" / "/".join(f"D{n}" for n in range(8))
    deep.mkdir(parents=True)
    (deep / "I0000001").write_bytes(b"x")
    with pytest.raises(ValueError, match="8 directory levels"):
        master_iso(tmp_path / "fileset", tmp_path / "disc.iso", "STUDY")


def test_size_estimate_is_a_close_upper_bound(tree: Path, tmp_path: Path) -> None:
    estimate = iso_size_estimate(tree)
    for joliet in (False, True):
        actual = master_iso(tree, tmp_path / "disc.iso", "STUDY", joliet=joliet)
        assert actual <= estimate <= actual + 64 * 2048
    assert CAPACITY["CD"] == 737_280_000 and CAPACITY["BD"] == 25_000_000_000


VIEWER_FILES = [
    "VIEWER/Start Viewer.exe",
    "VIEWER/readme.txt",
    "VIEWER/README.TXT",
    "VIEWER/lib/libviewer-core.so.1.2",
    "VIEWER/.hidden",
    "VIEWER/" + "/".join(f"level {n}" for n in range(10)) + "/deep file.jar",
]


def test_a_viewer_folder_keeps_its_names_in_joliet_and_rock_ridge(
    tree: Path, tmp_path: Path
) -> None:
    require("xorriso")
    for i, name in enumerate(VIEWER_FILES):
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(500 + 3000 * i))
    iso = tmp_path / "disc.iso"
    size = master_iso(tree, iso, "STUDY", foreign=("VIEWER",))
    assert size <= iso_size_estimate(tree, foreign=("VIEWER",))
    expected = source_files(tree)
    # Rock Ridge (what Linux mounts): every file under its real name and path.
    out = tmp_path / "extracted"
    xorriso("-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out))
    assert source_files(out) == expected
    # Joliet (what Windows shows): the same names and bytes.
    assert read_with_pycdlib(iso, joliet=True) == expected
    # ISO 9660 itself: the file-set's names exactly, the viewer's as unique 8.3 names
    # (a directory 8 levels down moved under RR_MOVED, as Rock Ridge does).
    iso9660 = pycdlib.PyCdlib()
    iso9660.open(str(iso))
    try:
        names = [
            f"{top}/{name}".lstrip("/").removesuffix(";1").removesuffix(".")
            for top, dirs, files in iso9660.walk(iso_path="/")
            for name in [*dirs, *files]
        ]
    finally:
        iso9660.close()
    assert set(FILES) <= set(names)
    viewer = [n for n in names if n.startswith(("VIEWER/", "RR_MOVED/"))]
    assert len(viewer) >= len(VIEWER_FILES) + 10  # every file and directory has a name
    for path in viewer:
        for part in path.split("/"):
            assert re.fullmatch(r"[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?", part), path
    assert len(set(viewer)) == len(viewer)


def test_a_viewer_name_joliet_cannot_hold_is_refused(tree: Path, tmp_path: Path) -> None:
    long = tree / "VIEWER" / ("x" * 80 + ".dll")
    long.parent.mkdir()
    long.write_bytes(b"x")
    with pytest.raises(ValueError, match="Joliet|64"):
        master_iso(tree, tmp_path / "disc.iso", "STUDY", foreign=("VIEWER",))
    assert not (tmp_path / "disc.iso").exists()


# --- the simulated burner -----------------------------------------------------------


@pytest.fixture
def iso(tree: Path, tmp_path: Path) -> Path:
    path = tmp_path / "disc.iso"
    master_iso(tree, path, "STUDY")
    return path


def test_simulated_burn_verify_eject(iso: Path, tmp_path: Path) -> None:
    options = SimulatedBurnerOptions(discs_dir=str(tmp_path / "drive"))
    burner = BURNERS.open("simulated", options)
    assert burner.destination == f"ISO images in {tmp_path / 'drive'}"
    assert burner.media() == MediaInfo(True, True, 737_280_000, "CD-R")
    seen: list[float] = []
    burner.burn(iso, "Study 1", progress=seen.append)

    [disc] = (tmp_path / "drive").glob("disc-*.iso")
    assert disc.name == "disc-1-Study_1.iso" and disc.read_bytes() == iso.read_bytes()
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert burner.verify(iso)
    assert not burner.media().blank
    with pytest.raises(BurnerError, match="insert a blank disc"):
        burner.burn(iso, "again")

    burner.eject()
    assert burner.media().blank
    burner.burn(iso, "Study 1")
    assert sorted(p.name for p in (tmp_path / "drive").iterdir()) == [
        "disc-1-Study_1.iso",
        "disc-2-Study_1.iso",
    ]
    # A restarted simulator goes on numbering rather than overwriting discs.
    assert SimulatedBurner(tmp_path / "drive")._number == 3


def test_simulated_verify_spots_a_bad_disc(iso: Path, tmp_path: Path) -> None:
    burner = SimulatedBurner(tmp_path / "drive")
    burner.burn(iso, "L")
    [disc] = (tmp_path / "drive").glob("disc-*.iso")
    data = bytearray(disc.read_bytes())
    data[40000] ^= 0xFF
    disc.write_bytes(bytes(data))
    assert not burner.verify(iso)


def test_simulated_empty_tray(iso: Path, tmp_path: Path) -> None:
    burner = SimulatedBurner(tmp_path / "drive")
    (tmp_path / "drive" / "NO_DISC").touch()
    assert not burner.media().present
    with pytest.raises(NoMedia, match="no disc in the drive"):
        burner.burn(iso, "L")
    assert list((tmp_path / "drive").glob("disc-*")) == []


def test_simulated_disc_too_small(iso: Path, tmp_path: Path) -> None:
    burner = SimulatedBurner(tmp_path / "drive", capacity_bytes=10 * 2048, kind="CD-R")
    with pytest.raises(DiscTooSmall, match=r"disc too small: needs 1 MB, 0 MB free") as caught:
        burner.burn(iso, "L")
    assert caught.value.needed_bytes == iso.stat().st_size
    assert list((tmp_path / "drive").glob("disc-*")) == []
    assert burner.media().blank


def test_error_messages_for_the_operator() -> None:
    too_small = DiscTooSmall(851_000_000, 737_280_000)
    assert str(too_small) == "disc too small: needs 812 MB, 703 MB free"
    assert str(pickle.loads(pickle.dumps(too_small))) == str(too_small)
    assert str(DriveGone("/dev/sr0")) == "drive not found: /dev/sr0"
    assert str(NoMedia()) == "no disc in the drive"
    with pytest.raises(
        ValueError, match="unknown burner driver 'laser'; known: simulated, xorriso"
    ):
        BURNERS.open("laser")


# --- xorriso: the real program on a stdio pseudo-drive ------------------------------


def test_xorriso_burner_on_a_stdio_pseudo_drive(iso: Path, tmp_path: Path) -> None:
    require("xorriso")
    burner = XorrisoBurner(f"stdio:{tmp_path / 'disc.img'}")
    media = burner.media()
    assert media.present and media.blank and media.capacity_bytes > iso.stat().st_size
    seen: list[float] = []
    burner.burn(iso, "L", progress=seen.append)
    assert seen[-1] == 1.0
    assert not burner.media().blank
    assert burner.verify(iso)
    burner.eject()  # not an MMC drive: xorriso notes it and succeeds


def test_xorriso_missing_program() -> None:
    with pytest.raises(BurnerError, match="burner program not found"):
        XorrisoBurner("/dev/sr0", xorriso="/nonexistent/xorriso").media()


# --- xorriso: fake scripts printing what a real drive's xorriso prints --------------

BANNER = "xorriso 1.5.4 : RockRidge filesystem manipulator, libburnia project."

BLANK_CD = """\
Drive current: -outdev '/dev/sr0'
Drive access : exclusive:unrestricted
Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GH24NSD1' revision 'LG00'
Media current: CD-R
Media product: 97m26s66f/79m59s71f , Ritek Corp
Media status : is blank
Media blocks : 0 readable , 359846 writable , 359846 overall
Media summary: 0 sessions, 0 data blocks, 0 data,  703m free"""

EMPTY_TRAY = """\
Drive current: -outdev '/dev/sr0'
Drive access : exclusive:unrestricted
Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GH24NSD1' revision 'LG00'
Media current: is not present"""

DRIVE_GONE = """\
libburn : FAILURE : File object '/dev/sr7' not found
libburn : FAILURE : Cannot access '/dev/sr7' as SG_IO CDROM drive
xorriso : FAILURE : Cannot acquire drive '/dev/sr7'
xorriso : aborting : -abort_on 'FAILURE' encountered 'FAILURE'"""

BURN_START = """\
Drive current: -dev '/dev/sr0'
Media current: CD-R
Media status : is blank
Media summary: 0 sessions, 0 data blocks, 0 data,  703m free
Beginning to write data track."""


def fake_xorriso(
    tmp_path: Path, burn: str, toc: str = BLANK_CD, toc_code: int = 0
) -> tuple[Path, Path]:
    """A shell script answering -toc with ``toc`` and a burn with the shell code ``burn``;
    every call's arguments are logged. Messages go to stderr, as xorriso's do."""
    script, log = tmp_path / "xorriso", tmp_path / "xorriso.log"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        f"echo '{BANNER}' >&2\n"
        'case " $* " in\n'
        f"  *' -toc '*) cat <<'EOF'\n{toc}\nEOF\n    exit {toc_code};;\n"
        "  *' -eject '*) exit 0;;\n"
        "esac\n"
        f"cat >&2 <<'EOF'\n{BURN_START}\nEOF\n"
        f"{burn}\n"
    )
    script.chmod(0o755)
    return script, log


def burns(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "cdrecord" in line]


def test_fake_burn_succeeds_with_increasing_progress(iso: Path, tmp_path: Path) -> None:
    script, log = fake_xorriso(
        tmp_path,
        "printf 'xorriso : UPDATE :    0 of  3 MB written [buf  50%%]\\r' >&2\n"
        "echo 'xorriso : UPDATE :    1 of  3 MB written [buf  99%]' >&2\n"
        "echo 'xorriso : UPDATE : Writing:      1024s   70.2%   fifo 100%  buf  99%' >&2\n"
        "echo 'xorriso : UPDATE :    3 of  3 MB written [buf  50%]' >&2\n"
        "echo \"Writing to '/dev/sr0' completed successfully.\" >&2\n"
        "exit 0",
    )
    burner = XorrisoBurner("/dev/sr0", xorriso=str(script), speed=8)
    seen: list[float] = []
    burner.burn(iso, "L", finalize=False, progress=seen.append)
    assert seen == [pytest.approx(1 / 3), pytest.approx(0.702), 1.0]
    [call] = burns(log)
    assert call == f"-as cdrecord -v dev=/dev/sr0 speed=8 -multi {iso.resolve()}"


def test_fake_burn_failure_reports_the_percentage(iso: Path, tmp_path: Path) -> None:
    script, _ = fake_xorriso(
        tmp_path,
        "echo 'xorriso : UPDATE : Writing:     12345s   43.1%  fifo 100%  buf  50%' >&2\n"
        "echo 'libburn : SORRY : SCSI error on write(16976,16): [3 0C 00] Write error.' >&2\n"
        "echo 'libburn : FATAL : Failed to write' >&2\n"
        "echo \"xorriso : aborting : -abort_on 'FAILURE' encountered 'FAILURE'\" >&2\n"
        "exit 1",
    )
    with pytest.raises(BurnerError, match=r"^burn failed at 43%: .*Failed to write") as caught:
        XorrisoBurner("/dev/sr0", xorriso=str(script)).burn(iso, "L")
    assert type(caught.value) is BurnerError
    assert "aborting" not in str(caught.value)


def test_fake_empty_tray(iso: Path, tmp_path: Path) -> None:
    script, log = fake_xorriso(tmp_path, "exit 0", toc=EMPTY_TRAY)
    burner = XorrisoBurner("/dev/sr0", xorriso=str(script))
    assert burner.media() == MediaInfo(False, False, 0, "")
    with pytest.raises(NoMedia, match="no disc in the drive"):
        burner.burn(iso, "L")
    assert burns(log) == []


def test_fake_disc_taken_out_before_the_burn(iso: Path, tmp_path: Path) -> None:
    script, _ = fake_xorriso(
        tmp_path,
        "echo 'libburn : SORRY : No media present' >&2\n"
        "echo 'xorriso : FAILURE : -as cdrecord: Job could not be performed properly.' >&2\n"
        "exit 5",
    )
    with pytest.raises(NoMedia):
        XorrisoBurner("/dev/sr0", xorriso=str(script)).burn(iso, "L")


def test_fake_drive_gone(iso: Path, tmp_path: Path) -> None:
    script, _ = fake_xorriso(tmp_path, f"cat >&2 <<'EOF'\n{DRIVE_GONE}\nEOF\nexit 5", DRIVE_GONE, 5)
    burner = XorrisoBurner("/dev/sr7", xorriso=str(script))
    for action in (burner.media, lambda: burner.burn(iso, "L")):
        with pytest.raises(DriveGone, match="drive not found: /dev/sr7"):
            action()
    with pytest.raises(DriveGone):
        XorrisoBurner(str(tmp_path / "sr7")).verify(iso)  # no such device node


def test_fake_disc_too_small(iso: Path, tmp_path: Path) -> None:
    small = BLANK_CD.replace("359846 writable", "10 writable")
    script, log = fake_xorriso(tmp_path, "exit 0", toc=small)
    with pytest.raises(DiscTooSmall, match="0 MB free"):
        XorrisoBurner("/dev/sr0", xorriso=str(script)).burn(iso, "L")
    assert burns(log) == []  # refused before the laser came on

    script, _ = fake_xorriso(
        tmp_path,
        "echo 'xorriso : FAILURE : Image size 400000s exceeds free space on media 359846s' >&2\n"
        "exit 5",
    )
    with pytest.raises(DiscTooSmall):
        XorrisoBurner("/dev/sr0", xorriso=str(script)).burn(iso, "L")


def test_toc_and_progress_parsing() -> None:
    assert parse_toc(BLANK_CD) == MediaInfo(True, True, 359846 * 2048, "CD-R")
    written = BLANK_CD.replace("is blank", "is written , is closed").replace(
        "0 readable , 359846 writable", "359846 readable , 0 writable"
    )
    assert parse_toc(written) == MediaInfo(True, False, 0, "CD-R")
    no_blocks = "\n".join(line for line in BLANK_CD.splitlines() if "Media blocks" not in line)
    assert parse_toc(no_blocks).capacity_bytes == 703 * 2**20
    assert not parse_toc(EMPTY_TRAY).present
    assert parse_progress("xorriso : UPDATE : Writing:  12345s   43.1%  fifo 100%  buf  50%") == (
        pytest.approx(0.431)
    )
    assert parse_progress("xorriso : UPDATE :   12 of  600 MB written [buf  50%]") == 0.02
    assert parse_progress("xorriso : UPDATE : Thank you for being patient. buf  50%") is None
