"""Transcoding a stored instance for a peer that does not take the syntax it is stored in.

The store keeps every instance exactly as received; when a forwarding or retrieve peer
accepts none of the transfer syntaxes an instance could go out in as is, this module
re-encodes its data set: native to native by rewriting the element encoding only,
compressed to native by decoding, and anything decodable to a compressed syntax by
decoding and encoding again. The codecs are pydicom's (``Dataset.decompress`` /
``Dataset.compress``) and its plugins (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle,
pyjpegls), so what can be produced depends on what is installed; the module-level
tuples say what this installation can do.

The SOP Instance UID is kept even when the result is lossy: the C-STORE request names
the instance the peer asked for (C-MOVE, C-GET) or expects, and the change of syntax is
the association's doing, not a new image. The lossy-compression attributes record it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder, get_encoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicombox.core.header import dataset_offset, read_stored_header

NATIVE: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)

# How a lossy target is produced, and the Lossy Image Compression Method (0028,2114)
# term PS3.3 C.7.6.1.1.5.1 gives it. There is no quality knob in the API, so each gets
# one conservative setting: J2K at 10:1, JPEG-LS with each sample within 2 of the
# original. (NEAR=0 would be lossless inside the near-lossless container, but then the
# target would not need allow_lossy at all; callers decide on the syntax, not on this.)
_LOSSY_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    JPEG2000: ("ISO_15444_1", {"j2k_cr": [10]}),
    JPEGLSNearLossless: ("ISO_14495_1", {"jls_error": 2}),
}

# The lossy JPEG processes code colour as YCbCr by definition: decoding them to RGB is
# what every viewer does and what the colour IODs expect of uncompressed data, and the
# rounding it adds is nothing next to the DCT's. Every other source keeps its values.
_TO_RGB_WHEN_DECODED = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})

# Byte size of the units a big endian encoding reverses, for the VRs pydicom writes as
# raw bytes (it does no swapping itself); numbers in US, SL, FD ... it converts.
_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_PIXEL_DATA = 0x7FE00010


def _can_encode(uid: str) -> bool:
    """Whether pydicom has an encoder for ``uid`` with one of its plugins installed."""
    try:
        return get_encoder(uid).is_available
    except (NotImplementedError, ValueError):  # no encoder for that syntax at all
        return False


# JPEG Lossless SV1 is listed for the day pydicom gains an encoder for it (3.0 has none).
LOSSLESS_ENCODABLE: tuple[str, ...] = tuple(
    uid
    for uid in (RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1)
    if _can_encode(uid)
)
LOSSY_ENCODABLE: tuple[str, ...] = tuple(uid for uid in _LOSSY_SETTINGS if _can_encode(uid))


class TranscodeError(Exception):
    """This instance cannot go out in that syntax (codec missing, lossy not allowed, pixel
    layout the encoder refuses …); message says which and why."""


def _decoder(uid: str) -> Decoder | None:
    """pydicom's decoder for ``uid`` if one of its plugins is installed."""
    try:
        decoder = get_decoder(uid)
    except (NotImplementedError, ValueError):
        return None
    return decoder if decoder.is_available else None


def _decodable(uid: str) -> bool:
    return uid in NATIVE or uid == DeflatedExplicitVRLittleEndian or _decoder(uid) is not None


def can_transcode(source: str, target: str, allow_lossy: bool = False) -> bool:
    """Whether transcode() would try: same syntax; any syntax -> native (decode, if a
    decoder exists for source); native or decodable -> lossless encodable; -> lossy only
    with allow_lossy."""
    return _refusal(source, target, allow_lossy) is None


def why_not(source: str, target: str, allow_lossy: bool = False) -> str | None:
    """Why transcode() would refuse to turn ``source`` into ``target``; None if it tries."""
    return _refusal(source, target, allow_lossy)


def _refusal(source: str, target: str, allow_lossy: bool) -> str | None:
    """Why ``source`` cannot become ``target``, or None when it can."""
    if source == target:
        return None
    if target not in NATIVE and target not in LOSSLESS_ENCODABLE and target not in LOSSY_ENCODABLE:
        return f"no encoder for {_name(target)} is installed"
    if not _decodable(source):
        return f"no decoder for {_name(source)} is installed"
    # A lossy source may go out in a lossless syntax: that syntax is only a container and
    # adds no further loss, and Lossy Image Compression (0028,2110) goes along as is.
    if target in LOSSY_ENCODABLE and not allow_lossy:
        return f"{_name(target)} is lossy and lossy compression is not allowed"
    return None


def _name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def transcode(path: Path, target: str, allow_lossy: bool = False) -> bytes:
    """The data set of the Part 10 file at `path` (the store's file, with its meta)
    encoded in transfer syntax `target`: the data set bytes only (no preamble, no file
    meta), ready to be sent as a C-STORE data set.

    Native to native re-encodes the elements and leaves the pixel data alone (bar the
    byte order to or from big endian); compressed to native decodes; anything to a
    compressed syntax decodes if needed and encodes. A lossy result records itself in
    the Lossy Image Compression attributes. Any failure is a TranscodeError.
    """
    try:
        # Walks every element header first, so a cut-short file fails here and not
        # half-way through a decoder.
        source = str(read_stored_header(path, frozenset()).file_meta.TransferSyntaxUID)
    except Exception as exc:
        raise TranscodeError(f"{path.name} is not a whole DICOM file: {exc}") from exc
    if source == target:  # already so: the data set bytes as stored, not re-encoded
        with open(path, "rb") as f:
            f.seek(dataset_offset(path))
            return f.read()
    why_not = _refusal(source, target, allow_lossy)
    if why_not:
        raise TranscodeError(f"{path.name} cannot go out as {_name(target)}: {why_not}")
    try:
        ds = dcmread(path)
        if source != target:  # else even encapsulated pixel data is only copied
            _to_little_endian_native(ds, source)
            if target not in NATIVE:
                _compress(ds, target)
            elif target == ExplicitVRBigEndian:
                _swap_words(ds, little_endian=True)
        return _encoded(ds, target)
    except TranscodeError:
        raise
    except Exception as exc:  # pydicom's and the plugins' errors, whatever their type
        raise TranscodeError(
            f"{path.name} could not be turned from {_name(source)} into {_name(target)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _to_little_endian_native(ds: Dataset, source: str) -> None:
    """Leave ``ds`` as pydicom would have read it from explicit VR little endian: values
    little endian, pixel data (if any) uncompressed."""
    if source == ExplicitVRBigEndian:
        _swap_words(ds, little_endian=False)
    # Inflated by dcmread or swapped above, a native data set now is explicit VR LE.
    if not UID(source).is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return
    if "PixelData" not in ds:
        return  # SR, presentation state … : the syntax is only the element encoding
    ds.decompress(as_rgb=source in _TO_RGB_WHEN_DECODED, generate_instance_uid=False)
    # pydicom labels YCbCr it decoded to full resolution with the stream's YBR_FULL_422,
    # which in native data means subsampled; the samples are YBR_FULL.
    if ds.PhotometricInterpretation == "YBR_FULL_422":
        ds.PhotometricInterpretation = "YBR_FULL"
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:  # offsets into fragments that are gone
            delattr(ds, keyword)


def _compress(ds: Dataset, target: str) -> None:
    """Encode the (native, little endian) pixel data of ``ds`` in ``target``."""
    if "PixelData" not in ds:
        return  # the syntax only says how the elements are encoded
    # Encoded from the decoded array rather than the raw buffer: the array has bits
    # above Bits Stored cleared and YBR_FULL_422 upsampled, is always colour-by-pixel,
    # and pydicom validates an array against the encoder's limits before encoding.
    array, pixel = get_decoder(ExplicitVRLittleEndian).as_array(ds, as_rgb=False)
    ds.PhotometricInterpretation = pixel["photometric_interpretation"]
    if ds.SamplesPerPixel > 1:
        ds.PlanarConfiguration = 0
    method, options = _LOSSY_SETTINGS.get(target, ("", {}))
    ds.compress(target, array, generate_instance_uid=False, **options)
    if method:
        _record_lossy(ds, method, ratio=array.nbytes / len(ds.PixelData))


def _record_lossy(ds: Dataset, method: str, ratio: float) -> None:
    """PS3.3 C.7.6.1.1.5: once lossy, always "01"; each lossy step appends its method
    and approximate ratio, in the same order."""
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = [*_values(ds, "LossyImageCompressionMethod"), method]
    ds.LossyImageCompressionRatio = [*_values(ds, "LossyImageCompressionRatio"), f"{ratio:.2f}"]


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def _swap_words(ds: Dataset, little_endian: bool) -> None:
    """Reverse the byte order of the raw binary values of ``ds`` (nested data sets too),
    between little and big endian. pydicom converts numbers itself but writes OW, OF …
    as the bytes it holds. Pixel Data in OW goes by its own sample size, as pydicom
    reads it; in OB it is bytes. UN values cannot be swapped: their layout is unknown.
    ``little_endian`` is the order the values are in now."""
    correct_ambiguous_vr(ds, little_endian)  # "OB or OW" … settled: what is there to swap?
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item, little_endian)
            continue
        size = _WORD_SIZE.get(elem.VR)
        if elem.tag == _PIXEL_DATA and elem.VR == "OW":
            size = max(2, int(ds.get("BitsAllocated", 16)) // 8)
        if not size or not elem.value:
            continue
        if len(elem.value) % size:
            raise TranscodeError(
                f"{elem.keyword or elem.tag} has {len(elem.value)} bytes, not whole "
                f"{size}-byte words, so its byte order cannot be converted"
            )
        elem.value = np.frombuffer(elem.value, f"u{size}").byteswap().tobytes()


def _encoded(ds: Dataset, target: str) -> bytes:
    """``ds`` written with ``target``'s VR and byte order, without preamble or meta."""
    syntax = UID(target)
    del ds[0x00020000:0x00030000]  # stray meta elements belong to the file, not the data set
    out = DicomBytesIO()
    out.is_little_endian = syntax.is_little_endian
    out.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(out, ds)
    return out.getvalue()
