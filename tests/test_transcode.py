"""The transcoder, on pydicom's own test images (only those bundled with pydicom, so
nothing is downloaded): every result is parsed back as a peer would and its pixels
compared with what pydicom decodes from the source."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicombox.core.transcode import (
    LOSSLESS_ENCODABLE,
    LOSSY_ENCODABLE,
    NATIVE,
    TranscodeError,
    can_transcode,
    transcode,
)

MPEG2 = "1.2.840.10008.1.2.4.100"  # video: pydicom has no decoder for it


def bundled(name: str) -> Path:
    """A file bundled with pydicom (get_testdata_file would download others)."""
    return Path(get_testdata_file(name))


def stored(ds: Dataset, path: Path) -> Path:
    """``ds`` as the store keeps it: a Part 10 file with preamble and full meta."""
    ds.save_as(path, enforce_file_format=True)
    return path


def parse(data: bytes, syntax: str) -> Dataset:
    """Read the returned data set the way a receiving peer would for that syntax."""
    uid = UID(syntax)
    ds = read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return ds


@pytest.fixture
def gray16_multiframe(tmp_path: Path) -> Path:
    """Three distinct 16-bit signed frames, from MR_small's image."""
    ds = dcmread(bundled("MR_small.dcm"))
    image = ds.pixel_array
    ds.PixelData = np.stack([image, image[::-1], image.T]).tobytes()
    ds.NumberOfFrames = 3
    return stored(ds, tmp_path / "gray16_3frames.dcm")


@pytest.fixture
def rgb8_multiframe(tmp_path: Path) -> Path:
    """A two-frame 8-bit RGB image, stored uncompressed."""
    ds = dcmread(bundled("SC_rgb_rle_2frame.dcm"))
    ds.decompress(generate_instance_uid=False)
    return stored(ds, tmp_path / "rgb8_2frames.dcm")


def test_what_this_installation_can_encode():
    assert (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian) == NATIVE
    # pyjpegls (a dependency) brings JPEG-LS; pydicom 3.0 cannot encode JPEG Lossless.
    assert (RLELossless, JPEG2000Lossless, JPEGLSLossless) == LOSSLESS_ENCODABLE
    assert (JPEG2000, JPEGLSNearLossless) == LOSSY_ENCODABLE


@pytest.mark.parametrize(
    ("source", "target", "allow_lossy", "expected"),
    [
        (ExplicitVRLittleEndian, ExplicitVRLittleEndian, False, True),
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian, False, True),
        (ExplicitVRBigEndian, ExplicitVRLittleEndian, False, True),
        (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, False, True),
        (JPEG2000, ExplicitVRLittleEndian, False, True),
        (JPEGBaseline8Bit, ImplicitVRLittleEndian, False, True),
        (ExplicitVRLittleEndian, RLELossless, False, True),
        (ExplicitVRLittleEndian, JPEGLSLossless, False, True),
        (RLELossless, JPEG2000Lossless, False, True),
        # A lossy source in a lossless syntax: the container adds no loss.
        (JPEGBaseline8Bit, JPEG2000Lossless, False, True),
        (ExplicitVRLittleEndian, JPEG2000, False, False),
        (ExplicitVRLittleEndian, JPEG2000, True, True),
        (ExplicitVRLittleEndian, JPEGLSNearLossless, False, False),
        (ExplicitVRLittleEndian, JPEGLSNearLossless, True, True),
        (JPEG2000, JPEG2000, False, True),  # as stored: no new loss
        (JPEG2000, JPEGLSNearLossless, False, False),  # a second lossy step
        (ExplicitVRLittleEndian, JPEGBaseline8Bit, True, False),  # no encoder
        (ExplicitVRLittleEndian, JPEGLosslessSV1, False, False),  # none in pydicom 3.0
        (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, False, False),
        (MPEG2, ExplicitVRLittleEndian, True, False),  # no decoder
        (MPEG2, MPEG2, False, True),
        ("1.2.3.4", ExplicitVRLittleEndian, False, False),
    ],
)
def test_can_transcode(source, target, allow_lossy, expected):
    assert can_transcode(source, target, allow_lossy) is expected


def test_native_to_implicit_keeps_the_pixel_bytes():
    path = bundled("CT_small.dcm")
    original = dcmread(path)
    out = parse(transcode(path, ImplicitVRLittleEndian), ImplicitVRLittleEndian)
    assert out.PixelData == original.PixelData
    assert out.PatientName == original.PatientName
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert set(out.keys()) == set(original.keys())
    assert np.array_equal(out.pixel_array, original.pixel_array)


def test_native_without_pixels_to_explicit():
    path = bundled("rtplan.dcm")  # implicit VR, sequences, no pixel data
    original = dcmread(path)
    out = parse(transcode(path, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    assert out == original


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose's own UIDs
def test_big_endian_both_ways():
    little, big = dcmread(bundled("rtdose.dcm")), dcmread(bundled("rtdose_expb.dcm"))
    # 32-bit samples: each one byte-reversed, as in pydicom's big endian copy of the file.
    out = parse(transcode(bundled("rtdose.dcm"), ExplicitVRBigEndian), ExplicitVRBigEndian)
    assert out.PixelData == big.PixelData
    assert np.array_equal(out.pixel_array, little.pixel_array)
    back = parse(
        transcode(bundled("rtdose_expb.dcm"), ExplicitVRLittleEndian), "1.2.840.10008.1.2.1"
    )
    assert back.PixelData == little.PixelData
    assert back.NumberOfFrames == 15


@pytest.mark.parametrize(
    "name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm"]
)
def test_lossless_compressed_to_native(name):
    path = bundled(name)
    source = dcmread(path)
    out = parse(transcode(path, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    assert not out["PixelData"].is_undefined_length  # native, not encapsulated
    frames = int(source.get("NumberOfFrames", 1))
    size = source.Rows * source.Columns * source.SamplesPerPixel * source.BitsAllocated // 8
    assert len(out.PixelData) == frames * size
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert out.SOPInstanceUID == source.SOPInstanceUID


def test_jpeg_ycbcr_422_multiframe_to_native_is_rgb():
    path = bundled("examples_ybr_color.dcm")  # JPEG baseline, YBR_FULL_422, 30 frames
    source = dcmread(path)
    out = parse(transcode(path, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    assert out.PhotometricInterpretation == "RGB"
    assert len(out.PixelData) == 30 * 240 * 320 * 3
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert out.LossyImageCompression == "01"  # stays: the pixels were lossy


SOURCES = {
    "16-bit grayscale": lambda request: bundled("CT_small.dcm"),
    "8-bit RGB": lambda request: bundled("examples_rgb_color.dcm"),
    "8-bit RGB, planes, big endian": lambda request: bundled("ExplVR_BigEnd.dcm"),
    "16-bit multi-frame": lambda request: request.getfixturevalue("gray16_multiframe"),
    "8-bit RGB multi-frame": lambda request: request.getfixturevalue("rgb8_multiframe"),
}


@pytest.mark.parametrize("target", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_lossless_round_trip_is_pixel_exact(request, kind, target):
    path = SOURCES[kind](request)
    source = dcmread(path)
    out = parse(transcode(path, target), target)
    assert out["PixelData"].is_undefined_length  # encapsulated
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert out.get("NumberOfFrames", 1) == source.get("NumberOfFrames", 1)
    assert out.SOPInstanceUID == source.SOPInstanceUID
    assert "LossyImageCompression" not in out


def test_compressed_to_other_compressed():
    path = bundled("MR_small_jp2klossless.dcm")
    out = parse(transcode(path, JPEGLSLossless), JPEGLSLossless)
    assert np.array_equal(out.pixel_array, dcmread(path).pixel_array)


@pytest.mark.parametrize("target", [JPEG2000, JPEGLSNearLossless])
def test_lossy_needs_allow_lossy(target):
    with pytest.raises(TranscodeError, match="lossy"):
        transcode(bundled("CT_small.dcm"), target)


@pytest.mark.parametrize(
    ("target", "method"), [(JPEG2000, "ISO_15444_1"), (JPEGLSNearLossless, "ISO_14495_1")]
)
def test_lossy_when_allowed_records_it(target, method):
    path = bundled("CT_small.dcm")
    source = dcmread(path)
    out = parse(transcode(path, target, allow_lossy=True), target)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == method
    assert float(out.LossyImageCompressionRatio) > 1
    assert out.SOPInstanceUID == source.SOPInstanceUID
    error = np.abs(out.pixel_array.astype(int) - source.pixel_array.astype(int))
    assert error.max() > 0
    if target == JPEGLSNearLossless:
        assert error.max() <= 2  # the NEAR bound the transcoder uses


def test_second_lossy_step_is_appended():
    path = bundled("JPEG2000.dcm")  # lossy already, ratio 2097 recorded without a method
    out = parse(transcode(path, JPEGLSNearLossless, allow_lossy=True), JPEGLSNearLossless)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionRatio[0] == 2097
    assert len(out.LossyImageCompressionRatio) == 2
    assert out.LossyImageCompressionMethod == "ISO_14495_1"


def test_lossy_source_into_lossless_syntax_stays_marked_lossy():
    path = bundled("JPEG2000.dcm")
    out = parse(transcode(path, RLELossless), RLELossless)
    assert out.LossyImageCompression == "01"
    assert np.array_equal(out.pixel_array, dcmread(path).pixel_array)


def test_truncated_file(tmp_path):
    whole = bundled("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[: len(whole) - 1000])  # inside the pixel data
    with pytest.raises(TranscodeError, match="not a whole DICOM file"):
        transcode(cut, RLELossless)
    with pytest.raises(TranscodeError):
        transcode(bundled("MR_truncated.dcm"), ExplicitVRLittleEndian)


@pytest.mark.parametrize("content", [b"", b"not dicom at all", bytes(range(256)) * 4])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(content)
    with pytest.raises(TranscodeError):
        transcode(path, ImplicitVRLittleEndian)


def test_missing_file(tmp_path):
    with pytest.raises(TranscodeError):
        transcode(tmp_path / "gone.dcm", ExplicitVRLittleEndian)


def test_pixels_the_encoder_refuses():
    # 1 bit per pixel: no compressed syntax takes it (PS3.5 8.2).
    with pytest.raises(TranscodeError, match="Bits Allocated"):
        transcode(bundled("liver_1frame.dcm"), RLELossless)


def test_syntax_without_an_encoder():
    with pytest.raises(TranscodeError, match="no encoder"):
        transcode(bundled("CT_small.dcm"), JPEGBaseline8Bit, allow_lossy=True)
