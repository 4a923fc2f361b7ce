"""The enhanced → single-frame split (seed 002), on a synthetic Enhanced CT built here:
every frame must come out as a complete CT Image with its own geometry, rescale and
window, its pixels, a stable UID and a reference to the frame it came from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    LegacyConvertedEnhancedCTImageStorage,
    RLELossless,
    generate_uid,
)

from dicombox.plugins.storage.split import SINGLE_FRAME_CLASS, SplitError, frame_uid, split_frames

FRAMES, ROWS, COLUMNS = 5, 32, 32
GROUP_SEQUENCES = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")


def item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def enhanced_ct() -> tuple[Dataset, np.ndarray]:
    """A small but complete Enhanced CT: what single-frame CT Image wants is either at the
    top level or in a functional group, so the split has everything to fill it."""
    pixels = np.random.default_rng(2).integers(-1024, 3072, (FRAMES, ROWS, COLUMNS), dtype=np.int16)
    ds = item(
        SpecificCharacterSet="ISO_IR 100",
        SOPClassUID=EnhancedCTImageStorage,
        SOPInstanceUID=generate_uid(),
        PatientName="Split^Test",
        PatientID="SPLIT1",
        PatientBirthDate="19700101",
        PatientSex="O",
        StudyInstanceUID=generate_uid(),
        StudyDate="20240102",
        StudyTime="101500",
        ReferringPhysicianName="",
        StudyID="1",
        AccessionNumber="A1",
        Modality="CT",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=3,
        PatientPosition="HFS",
        Laterality="",
        FrameOfReferenceUID=generate_uid(),
        PositionReferenceIndicator="",
        Manufacturer="dicombox",
        ManufacturerModelName="synthetic",
        DeviceSerialNumber="0",
        SoftwareVersions="0",
        InstanceNumber=7,
        ContentDate="20240102",
        ContentTime="101600",
        ImageType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"],
        AcquisitionNumber=1,
        AcquisitionDateTime="20240102101530",
        ContentQualification="PRODUCT",
        BurnedInAnnotation="NO",
        LossyImageCompression="00",
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        Rows=ROWS,
        Columns=COLUMNS,
        BitsAllocated=16,
        BitsStored=16,
        HighBit=15,
        PixelRepresentation=1,
        NumberOfFrames=FRAMES,
    )
    organization = generate_uid()
    ds.DimensionOrganizationSequence = [item(DimensionOrganizationUID=organization)]
    ds.DimensionIndexSequence = [
        item(
            DimensionOrganizationUID=organization,
            DimensionIndexPointer=0x00200032,  # Image Position (Patient)
            FunctionalGroupPointer=0x00209113,  # Plane Position Sequence
        )
    ]
    ds.SharedFunctionalGroupsSequence = [
        item(
            PixelMeasuresSequence=[item(PixelSpacing=[0.5, 0.5], SliceThickness=2.5)],
            PlaneOrientationSequence=[item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
            CTImageFrameTypeSequence=[
                item(
                    FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"],
                    PixelPresentation="MONOCHROME",
                    VolumetricProperties="VOLUME",
                    VolumeBasedCalculationTechnique="NONE",
                )
            ],
            CTXRayDetailsSequence=[item(KVP=120, FocalSpots=[1.2], FilterType="FLAT")],
        )
    ]
    ds.PerFrameFunctionalGroupsSequence = [
        item(
            FrameContentSequence=[
                item(
                    FrameAcquisitionNumber=1,
                    FrameAcquisitionDateTime=f"2024010210153{n}",
                    FrameReferenceDateTime=f"2024010210153{n}",
                    FrameAcquisitionDuration=100.0,
                    DimensionIndexValues=[n],
                )
            ],
            PlanePositionSequence=[item(ImagePositionPatient=[-8, -8, n * 2.5])],
            PixelValueTransformationSequence=[
                item(RescaleIntercept=-1024 + n, RescaleSlope=1, RescaleType="HU")
            ],
            FrameVOILUTSequence=[item(WindowCenter=40 + n, WindowWidth=400)],
        )
        for n in range(1, FRAMES + 1)
    ]
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, pixels


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Dataset, np.ndarray]:
    ds, pixels = enhanced_ct()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, ds, pixels


def test_single_frame_classes_are_the_standard_ones() -> None:
    from pydicom.uid import UID

    for enhanced, single in SINGLE_FRAME_CLASS.items():
        assert "Enhanced" in UID(enhanced).name, enhanced
        assert "Enhanced" not in UID(single).name, single
    assert SINGLE_FRAME_CLASS[EnhancedCTImageStorage] == CTImageStorage


def test_frame_uid_is_stable_unique_and_valid() -> None:
    original = "1.2.826.0.1.3680043.8.498.1"
    uids = [frame_uid(original, n) for n in range(1, 1001)]
    assert uids == [frame_uid(original, n) for n in range(1, 1001)]
    assert len(set(uids)) == 1000
    assert frame_uid("1.2.3", 1) != frame_uid("1.2.4", 1)
    for uid in uids:
        assert uid.startswith("2.25.") and len(uid) <= 64
        assert all(part.isdigit() and (part == "0" or part[0] != "0") for part in uid.split("."))
    with pytest.raises(ValueError):
        frame_uid(original, 0)


def test_each_frame_becomes_a_ct_image(source: tuple[Path, Dataset, np.ndarray]) -> None:
    path, original, pixels = source
    frames = list(split_frames(path))
    assert len(frames) == FRAMES
    for n, frame in enumerate(frames, start=1):
        assert frame.SOPClassUID == CTImageStorage
        assert frame.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert frame.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert frame.file_meta.MediaStorageSOPInstanceUID == frame.SOPInstanceUID
        assert frame.SOPInstanceUID == frame_uid(original.SOPInstanceUID, n)
        assert frame.InstanceNumber == n
        assert "NumberOfFrames" not in frame
        for keyword in (*GROUP_SEQUENCES, "DimensionIndexSequence"):
            assert keyword not in frame
        # Top-level attributes kept as they were.
        assert frame.PatientID == "SPLIT1"
        assert frame.StudyInstanceUID == original.StudyInstanceUID
        assert frame.SeriesInstanceUID == original.SeriesInstanceUID
        assert frame.FrameOfReferenceUID == original.FrameOfReferenceUID
        # Flattened from the shared groups ...
        assert [float(v) for v in frame.PixelSpacing] == [0.5, 0.5]
        assert float(frame.SliceThickness) == 2.5
        assert [float(v) for v in frame.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(frame.KVP) == 120
        assert list(frame.ImageType) == ["ORIGINAL", "PRIMARY", "VOLUME"]
        # ... and from the frame's own.
        assert [float(v) for v in frame.ImagePositionPatient] == [-8, -8, n * 2.5]
        assert float(frame.RescaleIntercept) == -1024 + n
        assert float(frame.RescaleSlope) == 1
        assert frame.RescaleType == "HU"
        assert float(frame.WindowCenter) == 40 + n
        assert float(frame.WindowWidth) == 400
        assert frame.AcquisitionDateTime == f"2024010210153{n}"
        assert (frame.AcquisitionDate, frame.AcquisitionTime) == ("20240102", f"10153{n}")
        # The derivation: frame n of the original.
        (reference,) = frame.SourceImageSequence
        assert reference.ReferencedSOPClassUID == EnhancedCTImageStorage
        assert reference.ReferencedSOPInstanceUID == original.SOPInstanceUID
        assert reference.ReferencedFrameNumber == n
        np.testing.assert_array_equal(frame.pixel_array, pixels[n - 1])
    assert len({f.SOPInstanceUID for f in frames}) == FRAMES


def test_a_retry_gives_the_same_instances(source: tuple[Path, Dataset, np.ndarray]) -> None:
    path = source[0]
    first = [str(f.SOPInstanceUID) for f in split_frames(path)]
    assert first == [str(f.SOPInstanceUID) for f in split_frames(path)]


def test_frames_save_and_read_back(
    source: tuple[Path, Dataset, np.ndarray], tmp_path: Path
) -> None:
    _, _, pixels = source
    for n, frame in enumerate(split_frames(source[0]), start=1):
        out = tmp_path / f"frame{n}.dcm"
        frame.save_as(out, enforce_file_format=True)
        back = dcmread(out)
        assert back.SOPInstanceUID == frame.SOPInstanceUID
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert back.SourceImageSequence[0].ReferencedFrameNumber == n
        np.testing.assert_array_equal(back.pixel_array, pixels[n - 1])


def test_compressed_source_splits_to_the_same_pixels(tmp_path: Path) -> None:
    ds, pixels = enhanced_ct()
    ds.compress(RLELossless)
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert dcmread(path).file_meta.TransferSyntaxUID == RLELossless
    frames = list(split_frames(path))
    assert len(frames) == FRAMES
    for n, frame in enumerate(frames, start=1):
        assert frame.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert len(frame.PixelData) == ROWS * COLUMNS * 2
        np.testing.assert_array_equal(frame.pixel_array, pixels[n - 1])


def test_legacy_converted_attributes_go_back(tmp_path: Path) -> None:
    ds, _ = enhanced_ct()
    ds.SOPClassUID = LegacyConvertedEnhancedCTImageStorage
    for n, groups in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
        groups.UnassignedPerFrameConvertedAttributesSequence = [item(ExposureTime=100 + n)]
    path = tmp_path / "legacy.dcm"
    ds.save_as(path, enforce_file_format=True)
    frames = list(split_frames(path))
    assert [f.SOPClassUID for f in frames] == [CTImageStorage] * FRAMES
    assert [f.ExposureTime for f in frames] == [101, 102, 103, 104, 105]


def test_a_plain_ct_is_refused() -> None:
    with pytest.raises(SplitError, match="CT_small.dcm.*CT Image Storage"):
        list(split_frames(Path(get_testdata_file("CT_small.dcm"))))


def test_no_pixel_data_is_refused(tmp_path: Path) -> None:
    ds, _ = enhanced_ct()
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(SplitError, match="no pixel data"):
        list(split_frames(path))


# pydicom warns about the end of file it reaches early; the SplitError is what counts.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_a_truncated_file_is_refused(tmp_path: Path, compressed: bool, keep: float) -> None:
    ds, _ = enhanced_ct()
    if compressed:
        ds.compress(RLELossless)
    whole = tmp_path / "whole.dcm"
    ds.save_as(whole, enforce_file_format=True)
    data = whole.read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SplitError, match="truncated.dcm"):
        list(split_frames(path))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_a_frame_valid(
    source: tuple[Path, Dataset, np.ndarray], tmp_path: Path
) -> None:
    # The synthetic source carries every attribute CT Image needs (some at the top level,
    # the rest in functional groups), so a frame must have no errors at all. Patient
    # Position and Laterality (type 2C) can only come from the source, which has them for
    # that reason. Warnings are allowed: the empty Laterality, and VOLUME as the 3rd Image
    # Type value (the enhanced frame flavour, not a CT Image defined term), kept as it is.
    frame = next(iter(split_frames(source[0])))
    out = tmp_path / "frame.dcm"
    frame.save_as(out, enforce_file_format=True)
    run = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, timeout=60)
    report = run.stdout + run.stderr
    assert "CTImage" in report, report
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report
