"""The File-set Creator (plugins/media/fileset.py) and the IHE PDI files, locally: pydicom's
bundled test files plus a synthetic Siemens CSA Non-Image object, checked with pydicom,
DCMTK (dcmdump, dcmmkdir) and dicom3tools (dciodvfy)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, generate_uid

from dicombox.core.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicombox.core.transcode import transcode
from dicombox.plugins.media import fileset as fileset_module
from dicombox.plugins.media.fileset import PROFILES, MediaError, build_fileset
from dicombox.plugins.media.pdi import person_name

CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"
BUNDLED = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "rtplan.dcm"]
OPTIONAL = ["test-SR.dcm", "rtdose.dcm"]  # used when this pydicom bundles them
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtplan.dcm
_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")


def _bundled(name: str) -> Path | None:
    found = get_testdata_file(name, download=False)
    return Path(found) if found else None


def _csa_non_image(like: Dataset, path: Path, series_uid: str, number: int) -> Path:
    """A Siemens CSA Non-Image object: private SOP class, no pixel data, CSA header."""
    ds = Dataset()
    ds.SOPClassUID = CSA_NON_IMAGE
    ds.SOPInstanceUID = generate_uid()
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(ds, keyword, like.get(keyword))
    ds.StudyID = like.get("StudyID") or "1"
    ds.Modality = like.Modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 99
    ds.InstanceNumber = number
    ds.add_new(0x00290010, "LO", "SIEMENS CSA NON-IMAGE")
    ds.add_new(0x00291010, "OB", b"SV10\x04\x03\x02\x01" + b"\x00" * 8)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    """The store's files: one each of CT, MR, J2K lossy, RLE, RT plan (+ SR, RT dose),
    two CSA Non-Image objects in one series."""
    folder = tmp_path / "store"
    folder.mkdir()
    paths = []
    for name in BUNDLED + OPTIONAL:
        found = _bundled(name)
        if found is None:
            assert name in OPTIONAL, f"{name} is not bundled with this pydicom"
            continue
        paths.append(Path(shutil.copy(found, folder / name)))
    # MR_small_RLE is MR_small compressed, same SOP Instance UID: the store would hold
    # one of them, so the RLE copy gets its own.
    rle = dcmread(folder / "MR_small_RLE.dcm")
    rle.SOPInstanceUID = generate_uid()
    rle.file_meta.MediaStorageSOPInstanceUID = rle.SOPInstanceUID
    rle.save_as(folder / "MR_small_RLE.dcm", enforce_file_format=True)
    ct = dcmread(folder / "CT_small.dcm", stop_before_pixels=True)
    series = generate_uid()
    for n in (1, 2):
        paths.append(_csa_non_image(ct, folder / f"CSA{n}.dcm", series, n))
    return paths


def _instances(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("DICOMDIR",) and "." not in p.name
    )


def _run(*command: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _levels(instance) -> list[Dataset]:
    """The PATIENT, STUDY and SERIES records above an instance's record."""
    return [n._record for n in reversed(instance.node.ancestors) if not n.is_root]


def _by_uid(paths: list[Path]) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}


def test_profiles_keep_only_what_they_allow() -> None:
    assert PROFILES["STD-GEN-CD"].allowed == (ExplicitVRLittleEndian,)
    for name in ("STD-GEN-DVD-J2K", "STD-GEN-USB-J2K", "STD-GEN-BD"):
        assert set(PROFILES[name].allowed) == {
            ExplicitVRLittleEndian,
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
        }
    assert set(PROFILES["STD-GEN-DVD-JPEG"].allowed) == {
        ExplicitVRLittleEndian,
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    }


def test_cd_file_set(sources: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "disc"
    report = build_fileset(sources, root, "STD-GEN-CD", label={"institution": "TEST HOSPITAL"})

    assert report.refused == []
    assert report.written == len(sources)
    assert report.folder == root
    files = _instances(root)
    assert len(files) == len(sources)
    assert report.size_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert not (root / fileset_module._STAGING).exists()

    # Every instance Explicit VR LE, with the box's own file meta.
    for path in files:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian, path
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    stored = {s: dcmread(s, stop_before_pixels=True).file_meta.TransferSyntaxUID for s in sources}
    assert report.converted == sum(ts != ExplicitVRLittleEndian for ts in stored.values())

    # The DICOMDIR: explicit VR LE, pydicom finds every instance with the right records.
    dicomdir = dcmread(root / "DICOMDIR")
    assert dicomdir.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    fs = FileSet(root / "DICOMDIR")
    assert fs.ID == "DICOMBOX"
    assert len(fs) == len(sources)
    written = _by_uid(files)
    source_by_uid = _by_uid(sources)
    assert {i.SOPInstanceUID for i in fs} == set(source_by_uid)
    kinds = {i.SOPInstanceUID: i.node.record_type for i in fs}
    expected = {"CT_small.dcm": "IMAGE", "rtplan.dcm": "RT PLAN", "CSA1.dcm": "PRIVATE"}
    expected |= {"test-SR.dcm": "SR DOCUMENT", "rtdose.dcm": "RT DOSE"}
    for uid, source in source_by_uid.items():
        if source.name in expected:
            assert kinds[uid] == expected[source.name], source.name
    for instance in fs:
        # PS3.3 F.5: Type 1 keys of each level are there (filled in when a source lacks them)
        patient, study, series = _levels(instance)
        assert patient.PatientID
        assert study.StudyDate and study.StudyTime and study.StudyID
        assert "AccessionNumber" in study and "StudyDescription" in study
        assert series.Modality and series.SeriesNumber is not None
        if instance.node.record_type == "PRIVATE":
            assert instance.node._record.PrivateRecordUID == CSA_NON_IMAGE
        else:
            assert instance.node._record.InstanceNumber is not None
        assert Path(instance.path) == written[instance.SOPInstanceUID]

    # Pixel data as the source's, decoded.
    for uid, path in written.items():
        source = dcmread(source_by_uid[uid])
        if "PixelData" in source:
            assert np.array_equal(dcmread(path).pixel_array, source.pixel_array), path
    images = sum(1 for i in fs if i.node.record_type == "IMAGE")

    # dicom3tools checks the DICOMDIR against PS3.3 (Basic Directory IOD).
    out = _run("dciodvfy", str(root / "DICOMDIR"))
    errors = [line for line in (out.stdout + out.stderr).splitlines() if "Error" in line]
    assert not errors, out.stdout + out.stderr

    # DCMTK reads it back: dcmdump lists the records, and dcmmkdir updates the existing
    # DICOMDIR (on a copy: it rewrites it) with images already in it, keeping every record.
    dump = _run("dcmdump", str(root / "DICOMDIR"))
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.count("[IMAGE]") == images
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    relative = [str(p.relative_to(root)) for p in files if "/IM" in str(p.relative_to(root))]
    update = _run(
        "dcmmkdir", "+U", "-nb", "+D", str(copy / "DICOMDIR"), "+id", str(copy), *relative
    )
    assert update.returncode == 0, update.stdout + update.stderr
    assert len(FileSet(copy / "DICOMDIR")) == len(sources)


def test_file_ids_are_ps310_conformant(sources: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "disc"
    build_fileset(sources, root)
    for instance in FileSet(root / "DICOMDIR"):
        parts = Path(instance.path).relative_to(root).parts
        assert len(parts) <= 8, parts
        assert all(_COMPONENT.fullmatch(p) for p in parts), parts
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if path.name in ("README.TXT", "INDEX.HTM"):
            continue  # the PDI files: 8.3 names, outside the file-set
        assert all(_COMPONENT.fullmatch(p) for p in parts), parts
        assert len(parts) <= 8


def test_j2k_profile_keeps_jpeg2000_and_converts_rle(sources: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "dvd"
    report = build_fileset(sources, root, "STD-GEN-DVD-J2K")
    written = _by_uid(_instances(root))
    by_name = {s.name: s for s in sources}

    j2k = by_name["JPEG2000.dcm"]
    uid = str(dcmread(j2k, stop_before_pixels=True).SOPInstanceUID)
    out = dcmread(written[uid])
    assert out.file_meta.TransferSyntaxUID == JPEG2000
    assert out.PixelData == dcmread(j2k).PixelData  # the codestream as stored
    # The data set bytes are the transcoder's "as stored" bytes, untouched.
    assert written[uid].read_bytes().endswith(transcode(j2k, JPEG2000))

    rle = by_name["MR_small_RLE.dcm"]
    uid = str(dcmread(rle, stop_before_pixels=True).SOPInstanceUID)
    out = dcmread(written[uid])
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(out.pixel_array, dcmread(rle).pixel_array)

    fs = FileSet(root / "DICOMDIR")
    record = next(i for i in fs if i.SOPInstanceUID == uid)
    assert record.TransferSyntaxUID == ExplicitVRLittleEndian
    not_ele = [s for s in sources if dcmread(s).file_meta.TransferSyntaxUID != JPEG2000]
    assert report.converted == sum(
        dcmread(s).file_meta.TransferSyntaxUID != ExplicitVRLittleEndian for s in not_ele
    )


def test_pdi_files(sources: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "disc"
    label = {"patient": "Doe^Jane", "date": "20240102", "institution": "Clinique Sainte-Élise"}
    build_fileset(sources, root, label=label)

    readme = (root / "README.TXT").read_bytes()
    readme.decode("ascii")  # plain ASCII, or this raises
    text = readme.decode("ascii")
    assert "DICOMDIR" in text and "autorun" in text
    assert "Clinique Sainte-Elise" in text and "2024-01-02" in text
    page = (root / "INDEX.HTM").read_bytes().decode("ascii")
    assert 'href="README.TXT"' in page
    assert "<script" not in page.lower() and "src=" not in page.lower()
    for source in sources:
        name = str(dcmread(source, stop_before_pixels=True).PatientName)
        assert person_name(name) in page, name
        assert person_name(name) in text, name
    assert "Sainte-&#201;lise" in page
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [
        "DICOMDIR",
        "INDEX.HTM",
        "README.TXT",
    ]


def test_unconvertible_instance_is_refused_and_the_rest_written(
    sources: list[Path], tmp_path: Path
) -> None:
    bogus = dcmread(sources[0])
    bogus.SOPInstanceUID = generate_uid()
    bogus.file_meta.MediaStorageSOPInstanceUID = bogus.SOPInstanceUID
    bogus.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"  # no such codec
    bad = tmp_path / "bogus.dcm"
    bogus.save_as(bad, enforce_file_format=False)

    report = build_fileset([*sources, bad], tmp_path / "disc")
    assert [path for path, _ in report.refused] == [bad]
    assert report.refused[0][1]  # with a reason
    assert report.written == len(sources)
    assert len(FileSet(tmp_path / "disc" / "DICOMDIR")) == len(sources)


def test_transcode_error_is_refused(
    sources: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fileset_module.transcode

    def failing(path: Path, target: str, allow_lossy: bool = False) -> bytes:
        if path.name == "JPEG2000.dcm":
            raise fileset_module.TranscodeError("JPEG2000.dcm: decoder failed")
        return real(path, target, allow_lossy)

    monkeypatch.setattr(fileset_module, "transcode", failing)
    report = build_fileset(sources, tmp_path / "disc")
    assert [(p.name, why) for p, why in report.refused] == [
        ("JPEG2000.dcm", "JPEG2000.dcm: decoder failed")
    ]
    assert report.written == len(sources) - 1


def test_missing_type1_keys_are_filled_in_the_records_only(tmp_path: Path) -> None:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("PatientID", "StudyDate", "StudyID", "SeriesNumber", "InstanceNumber"):
        delattr(ds, keyword)
    ds.Modality = ""
    source = tmp_path / "bare.dcm"
    ds.save_as(source, enforce_file_format=True)

    build_fileset([source], tmp_path / "disc")
    (instance,) = FileSet(tmp_path / "disc" / "DICOMDIR")
    patient, study, series = _levels(instance)
    assert patient.PatientID.startswith("UNKNOWN-")
    assert study.StudyDate == ds.SeriesDate  # the nearest date the instance has
    assert study.StudyID == "1"  # no Accession Number to stand in
    assert series.Modality == "OT" and series.SeriesNumber == 1
    assert instance.node._record.InstanceNumber == 1
    written = dcmread(instance.path)
    assert "PatientID" not in written  # the instance stays as stored


def test_bad_arguments(sources: list[Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="unknown media profile"):
        build_fileset(sources, tmp_path / "a", "STD-GEN-FLOPPY")
    with pytest.raises(MediaError, match="File-set ID"):
        build_fileset(sources, tmp_path / "b", fileset_id="A" * 17)
    full = tmp_path / "c"
    full.mkdir()
    (full / "X").write_text("x")
    with pytest.raises(MediaError, match="not empty"):
        build_fileset(sources, full)
    with pytest.raises(MediaError, match="no instance"):
        build_fileset([tmp_path / "missing.dcm"], tmp_path / "d")
