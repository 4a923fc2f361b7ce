"""Burning end to end on the simulated burner: a study sent with storescu becomes an ISO
that xorriso and pydicom read back, every instance present with its pixels; an empty
tray is a clear, retried error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import run, storescu
from tests.support.synthetic import ct_dataset


def media_box(make_box, discs: Path) -> RunningBox:
    return make_box(f'[media]\ndiscs_dir = "{discs}"\nretries = 3\n')


def store_study(box: RunningBox, folder: Path, count: int = 4) -> tuple[str, list[Path]]:
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, count + 1):
        path = folder / f"{n}.dcm"
        ct_dataset(study, series, n, rows=32, columns=32, patient="DISC^DORA").save_as(
            path, enforce_file_format=True
        )
        files.append(path)
    assert storescu(box.port, files).returncode == 0
    return study, files


def test_burn_a_study_and_read_the_disc_back(make_box, tmp_path):
    require("storescu", "xorriso", "dcmdump")
    discs = tmp_path / "discs"
    box = media_box(make_box, discs)
    study, files = store_study(box, tmp_path / "study")
    queued = box.cli("burn", study)
    assert queued.returncode == 0, queued.stderr
    job = box.wait_job("burn", "done")
    assert "4 instances burned, 1 disc(s)" in job["progress"], job
    (iso,) = discs.glob("disc-*.iso")
    listing = run(["xorriso", "-indev", iso, "-find", "/", "-type", "f"]).stdout
    for name in ("DICOMDIR", "README.TXT", "INDEX.HTM"):
        assert f"'/{name}'" in listing, listing
    out = tmp_path / "extracted"
    extracted = run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    assert extracted.returncode == 0, extracted.stderr
    assert run(["dcmdump", out / "DICOMDIR"]).returncode == 0
    fileset = FileSet(out / "DICOMDIR")
    found = {str(i.SOPInstanceUID): i.load() for i in fileset}
    assert len(found) == 4
    for path in files:
        source = pydicom.dcmread(path)
        assert np.array_equal(found[str(source.SOPInstanceUID)].pixel_array, source.pixel_array)
    assert "DISC, DORA" in (out / "INDEX.HTM").read_text()  # names shown as people read them


def test_compressed_study_is_decompressed_for_a_cd(make_box, tmp_path):
    require("dcmsend", "xorriso")
    discs = tmp_path / "discs"
    box = media_box(make_box, discs)
    source = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    assert run(["dcmsend", "-aec", "DICOMBOX", "127.0.0.1", box.port,
                get_testdata_file("MR_small_RLE.dcm")]).returncode == 0  # fmt: skip
    assert box.cli("burn", str(source.StudyInstanceUID)).returncode == 0
    box.wait_job("burn", "done")
    (iso,) = discs.glob("disc-*.iso")
    out = tmp_path / "extracted"
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    (instance,) = FileSet(out / "DICOMDIR")
    got = instance.load()
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # STD-GEN-CD
    assert np.array_equal(got.pixel_array, source.pixel_array)


def test_empty_tray_is_reported_and_retried(make_box, tmp_path):
    require("storescu")
    discs = tmp_path / "discs"
    discs.mkdir()
    (discs / "NO_DISC").touch()
    box = media_box(make_box, discs)
    study, _ = store_study(box, tmp_path / "study", count=2)
    assert box.cli("burn", study).returncode == 0
    job = box.wait_job("burn", error="no disc in the drive", timeout=30)
    assert job["state"] == "queued" and not list(discs.glob("disc-*.iso"))
    (discs / "NO_DISC").unlink()  # the operator puts a disc in
    job = box.wait_job("burn", "done")
    assert len(list(discs.glob("disc-*.iso"))) == 1


def test_burn_of_an_unknown_study_fails_clearly(make_box, tmp_path):
    box = media_box(make_box, tmp_path / "discs")
    assert box.cli("burn", "1.2.3.4").returncode == 0
    job = box.wait_job("burn", "failed")
    assert "none of the studies 1.2.3.4 is stored" in job["last_error"]


def test_import_a_burned_disc_into_another_box(make_box, tmp_path):
    require("storescu")
    discs = tmp_path / "discs"
    box = media_box(make_box, discs)
    study, files = store_study(box, tmp_path / "study")
    assert box.cli("burn", study).returncode == 0
    box.wait_job("burn", "done")
    (iso,) = discs.glob("disc-*.iso")
    other = tmp_path / "other"
    listed = box.cli("--data-dir", str(other), "media", "import", "--list", str(iso))
    assert listed.returncode == 0 and study in listed.stdout and "DISC^DORA" in listed.stdout
    assert not (other / "studies").exists() or not list((other / "studies").rglob("*.dcm"))
    imported = box.cli("--data-dir", str(other), "media", "import", str(iso))
    assert imported.returncode == 0 and "4 imported" in imported.stdout, imported.stdout
    stored = {pydicom.dcmread(p).SOPInstanceUID: p for p in (other / "studies").rglob("*.dcm")}
    assert len(stored) == 4
    for path in files:
        source = pydicom.dcmread(path)
        got = pydicom.dcmread(stored[source.SOPInstanceUID])
        assert np.array_equal(got.pixel_array, source.pixel_array)
    (row,) = json.loads(box.cli("--data-dir", str(other), "studies", "--json").stdout)
    assert (row["study_instance_uid"], row["instances"]) == (study, 4)


def test_import_from_a_folder_without_dicomdir_is_a_clear_error(make_box, tmp_path):
    box = media_box(make_box, tmp_path / "discs")
    empty = tmp_path / "stick"
    empty.mkdir()
    result = box.cli("media", "import", str(empty))
    assert result.returncode == 2 and "no DICOMDIR there" in result.stderr


def test_usb_export_then_update_with_a_second_study(make_box, tmp_path):
    require("storescu", "dcmdump", "dciodvfy")
    usb = tmp_path / "media"
    stick = usb / "STICK"
    stick.mkdir(parents=True)
    (stick / "holiday.jpg").write_bytes(b"not ours")  # a stick is rarely empty
    box = make_box(f'[media]\nusb_root = "{usb}"\n')
    first, _ = store_study(box, tmp_path / "a", count=2)
    second, _ = store_study(box, tmp_path / "b", count=3)
    one = box.cli("export", "usb", first)
    assert one.returncode == 0 and "2 instances written" in one.stdout, one.stdout + one.stderr
    two = box.cli("export", "usb", second)
    assert two.returncode == 0 and "3 instances written" in two.stdout, two.stdout + two.stderr
    studies = {str(i.StudyInstanceUID) for i in FileSet(stick / "DICOMDIR")}
    assert studies == {first, second} and len(list(FileSet(stick / "DICOMDIR"))) == 5
    assert run(["dcmdump", stick / "DICOMDIR"]).returncode == 0
    check = run(["dciodvfy", stick / "DICOMDIR"])
    assert "Error" not in check.stdout + check.stderr, check.stdout + check.stderr
    assert (stick / "holiday.jpg").read_bytes() == b"not ours"
    # the same study again adds nothing twice
    again = box.cli("export", "usb", first)
    assert again.returncode == 0 and len(list(FileSet(stick / "DICOMDIR"))) == 5


def test_usb_export_without_a_stick_is_a_clear_error(make_box, tmp_path):
    require("storescu")
    box = make_box(f'[media]\nusb_root = "{tmp_path / "media"}"\n')
    study, _ = store_study(box, tmp_path / "a", count=1)
    result = box.cli("export", "usb", study)
    assert result.returncode == 1 and "no USB stick is plugged in" in result.stderr


def store_large_study(box: RunningBox, folder: Path) -> list[Path]:
    """8 images of 128 kB: 1 MB, more than the 90 % of 1 MB a disc of 1 MB takes."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, 9):
        path = folder / f"{n}.dcm"
        ct_dataset(study, series, n, rows=256, columns=256).save_as(path, enforce_file_format=True)
        files.append(path)
    assert storescu(box.port, files).returncode == 0
    return files


def disc_uids(discs: Path, work: Path) -> list[set[str]]:
    """The SOP Instance UIDs in each burned disc's DICOMDIR, disc by disc."""
    found = []
    for number, iso in enumerate(sorted(discs.glob("disc-*.iso")), start=1):
        out = work / f"disc{number}"
        run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
        found.append({str(i.SOPInstanceUID) for i in FileSet(out / "DICOMDIR")})
    return found


def test_a_study_larger_than_a_disc_spans_several_each_a_file_set(make_box, tmp_path):
    require("storescu", "xorriso")
    discs = tmp_path / "discs"
    box = make_box(f'[media]\ndiscs_dir = "{discs}"\ndisc_capacity_mb = 1\n')
    files = store_large_study(box, tmp_path / "study")
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    assert box.cli("burn", study).returncode == 0
    job = box.wait_job("burn", "done")
    assert "8 instances burned, 2 disc(s)" in job["progress"], job
    seen: set[str] = set()
    for uids in disc_uids(discs, tmp_path):
        assert uids and not uids & seen  # each disc a file-set of its own, nothing twice
        seen |= uids
    assert seen == {str(pydicom.dcmread(p).SOPInstanceUID) for p in files}


def test_a_retried_spanning_burn_does_not_burn_its_first_disc_again(make_box, tmp_path):
    require("storescu", "xorriso")
    discs = tmp_path / "discs"
    discs.mkdir()
    (discs / "BLANKS").write_text("1")  # one blank disc for a study that needs two
    box = make_box(
        f'[media]\ndiscs_dir = "{discs}"\ndisc_capacity_mb = 1\nretries = 5\ndeidentify = "basic"\n'
    )
    files = store_large_study(box, tmp_path / "study")
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    assert box.cli("burn", study).returncode == 0
    job = box.wait_job("burn", error="no disc in the drive", timeout=60)
    assert job["state"] == "queued" and "disc 2/2" in job["last_error"], job
    assert len(list(discs.glob("disc-*.iso"))) == 1
    (discs / "BLANKS").write_text("5")  # the operator refills the stack
    job = box.wait_job("burn", "done")
    assert "8 instances burned, 2 disc(s)" in job["progress"], job
    first, second = disc_uids(discs, tmp_path)  # two discs, not three
    assert len(first) + len(second) == 8 and not first & second
    # One de-identification across the retry: both discs hold the same new study UID.
    studies = {
        str(pydicom.dcmread(p).StudyInstanceUID) for p in (tmp_path / "disc1").rglob("IM*")
    } | {str(pydicom.dcmread(p).StudyInstanceUID) for p in (tmp_path / "disc2").rglob("IM*")}
    assert len(studies) == 1 and study not in studies, studies
    (payload,) = [j["payload"] for j in json.loads(box.cli("jobs", "--json").stdout)]
    assert "export_key" not in json.dumps(payload)  # forgotten once the job is done


def test_a_disc_carries_the_configured_viewer_under_its_own_names(make_box, tmp_path):
    require("storescu", "xorriso")
    discs, viewer = tmp_path / "discs", tmp_path / "viewer"
    (viewer / "lib").mkdir(parents=True)
    (viewer / "Start Viewer.exe").write_bytes(b"MZ" + bytes(5000))
    (viewer / "lib" / "viewer-core.dll").write_bytes(b"MZ" + bytes(9000))
    box = make_box(
        f'[media]\ndiscs_dir = "{discs}"\nviewer_dir = "{viewer}"\n'
        'viewer_start = "Start Viewer.exe"\n'
    )
    study, files = store_study(box, tmp_path / "study", count=2)
    assert box.cli("burn", study).returncode == 0
    box.wait_job("burn", "done")
    (iso,) = discs.glob("disc-*.iso")
    listing = run(["xorriso", "-indev", iso, "-find", "/VIEWER", "-type", "f"]).stdout
    assert "'/VIEWER/Start Viewer.exe'" in listing and "'/VIEWER/lib/viewer-core.dll'" in listing
    out = tmp_path / "extracted"
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    assert (out / "VIEWER" / "lib" / "viewer-core.dll").read_bytes() == (
        viewer / "lib" / "viewer-core.dll"
    ).read_bytes()
    assert "start VIEWER/Start Viewer.exe" in (out / "README.TXT").read_text()
    assert 'href="VIEWER/Start%20Viewer.exe"' in (out / "INDEX.HTM").read_text()
    assert len(list(FileSet(out / "DICOMDIR"))) == 2  # the file-set is as without a viewer


def test_deidentified_disc_names_nobody(make_box, tmp_path):
    require("storescu", "xorriso")
    discs = tmp_path / "discs"
    box = media_box(make_box, discs)
    study, files = store_study(box, tmp_path / "study", count=2)
    assert box.cli("burn", study, "--deidentify", "basic").returncode == 0
    box.wait_job("burn", "done")
    (iso,) = discs.glob("disc-*.iso")
    raw = iso.read_bytes()
    for identifying in (b"DISC^DORA", b"DISC, DORA", b"B001", study.encode()):
        assert identifying not in raw, identifying  # not in any file, DICOMDIR or PDI page
    out = tmp_path / "extracted"
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    instances = [i.load() for i in FileSet(out / "DICOMDIR")]
    assert len(instances) == 2
    assert {str(i.PatientName) for i in instances} == {"ANONYMOUS"}
    assert {i.PatientIdentityRemoved for i in instances} == {"YES"}
    assert len({i.StudyInstanceUID for i in instances}) == 1  # remapped consistently
    sources = {pydicom.dcmread(p).InstanceNumber: pydicom.dcmread(p) for p in files}
    for got in instances:
        assert np.array_equal(got.pixel_array, sources[got.InstanceNumber].pixel_array)


def test_disc_has_ihe_pdi_previews_linked_from_the_index(make_box, tmp_path):
    require("storescu", "xorriso")
    discs = tmp_path / "discs"
    box = media_box(make_box, discs)
    study, _ = store_study(box, tmp_path / "study", count=3)
    assert box.cli("burn", study).returncode == 0
    box.wait_job("burn", "done")
    (iso,) = discs.glob("disc-*.iso")
    out = tmp_path / "extracted"
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    assert 'href="IHE_PDI/INDEX.HTM"' in (out / "INDEX.HTM").read_text()
    page = (out / "IHE_PDI" / "INDEX.HTM").read_text()
    (preview,) = (out / "IHE_PDI").glob("*.JPG")  # one series, one preview
    assert preview.name in page and "<script" not in page
    assert preview.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    from PIL import Image

    with Image.open(preview) as image:
        assert max(image.size) <= 256 and image.getextrema() != (0, 0)  # not blank
