"""Enhanced multi-frame → single-frame split (seed 002), for forwarding to an archive that
does not take the enhanced classes: each frame becomes a complete instance of the
matching single-frame class, its functional groups flattened into the attributes that
class uses, its pixels native, and a reference back to the frame it came from."""

from __future__ import annotations

import copy
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

_CT, _MR, _PET, _XA = (f"1.2.840.10008.5.1.4.1.1.{n}" for n in ("2", "4", "128", "12.1"))
SINGLE_FRAME_CLASS: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2.1": _CT,  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2": _CT,  # Legacy Converted Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1": _MR,  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4": _MR,  # Legacy Converted Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.130": _PET,  # Enhanced PET Image Storage
    "1.2.840.10008.5.1.4.1.1.128.1": _PET,  # Legacy Converted Enhanced PET Image Storage
    "1.2.840.10008.5.1.4.1.1.12.1.1": _XA,  # Enhanced XA Image Storage
}

# The multi-frame machinery, and what each frame gets anew: not copied from the original.
# fmt: off
_NOT_COPIED = frozenset((
    "NumberOfFrames", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "DimensionIndexSequence", "DimensionOrganizationSequence", "DimensionOrganizationType",
    "FrameIncrementPointer", "RepresentativeFrameNumber", "ConcatenationUID",
    "InConcatenationNumber", "ConcatenationFrameOffsetNumber", "InConcatenationTotalNumber",
    "SOPInstanceUIDOfConcatenationSource", "PixelData", "FloatPixelData",
    "DoubleFloatPixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "DataSetTrailingPadding", "SOPClassUID", "SOPInstanceUID", "InstanceNumber",
))

# Functional groups whose contents are single-frame attributes under the same tag.
_LIFTED: dict[str, tuple[str, ...]] = {
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "FrameVOILUTSequence": (
        "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction",
    ),
    "PixelValueTransformationSequence": ("RescaleIntercept", "RescaleSlope", "RescaleType"),
    "FrameAnatomySequence": ("AnatomicRegionSequence",),
    "CTAcquisitionDetailsSequence": (
        "DataCollectionDiameter", "GantryDetectorTilt", "TableHeight", "RotationDirection",
        "RevolutionTime", "SingleCollimationWidth", "TotalCollimationWidth",
    ),
    "CTReconstructionSequence": ("ReconstructionDiameter", "ConvolutionKernel"),
    "CTXRayDetailsSequence": ("KVP", "FocalSpots", "FilterType"),
    "CTExposureSequence": ("CTDIvol",),
    "MRTimingAndRelatedParametersSequence": ("RepetitionTime", "FlipAngle", "EchoTrainLength"),
    "MRAveragesSequence": ("NumberOfAverages",),
    "MRReceiveCoilSequence": ("ReceiveCoilName",),
    "MRTransmitCoilSequence": ("TransmitCoilName",),
}
# fmt: on
# Functional group attributes whose single-frame equivalent has another tag (and VR).
_RENAMED: tuple[tuple[str, str, str], ...] = (
    ("FrameContentSequence", "FrameAcquisitionDateTime", "AcquisitionDateTime"),
    ("FrameContentSequence", "FrameAcquisitionNumber", "AcquisitionNumber"),
    ("FrameContentSequence", "FrameComments", "ImageComments"),
    ("FrameAnatomySequence", "FrameLaterality", "ImageLaterality"),
    ("CTExposureSequence", "ExposureTimeInms", "ExposureTime"),
    ("CTExposureSequence", "XRayTubeCurrentInmA", "XRayTubeCurrent"),
    ("CTExposureSequence", "ExposureInmAs", "Exposure"),
    ("MREchoSequence", "EffectiveEchoTime", "EchoTime"),
    ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", "TriggerTime"),
)

_UNASSIGNED = (
    "UnassignedSharedConvertedAttributesSequence",
    "UnassignedPerFrameConvertedAttributesSequence",
)

# A namespace of our own, so no other uuid5-from-a-UID scheme can yield the same UIDs.
_FRAME_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicombox:split-frame")


# What pydicom raises for a file it cannot parse, truncated ones included.
_UNREADABLE = (InvalidDicomError, BytesLengthException, EOFError, OSError, ValueError, struct.error)


class SplitError(Exception):
    """The file cannot be split; the message says which file and why."""


def frame_uid(sop_instance_uid: str, frame: int) -> str:
    """A stable UID for frame n (1-based) of an instance, the same every time (a retry
    must not create new instances): 2.25 and a name-based (uuid5) UUID, ≤ 44 characters."""
    if frame < 1:
        raise ValueError(f"frame numbers start at 1, not {frame}")
    name = f"{sop_instance_uid.strip(chr(0) + ' ')}/{frame}"
    return f"2.25.{uuid.uuid5(_FRAME_NAMESPACE, name).int}"


def split_frames(path: Path) -> Iterator[Dataset]:
    """The single-frame instances of the enhanced multi-frame Part 10 file at `path`, one
    per frame, in frame order, each with file_meta (Explicit VR Little Endian) and ready
    for ``save_as(..., enforce_file_format=True)``. Frames are decoded one at a time, so
    a file whose pixel data is corrupt may raise SplitError after some were yielded."""
    try:
        source = dcmread(path)
        template = _template(source)  # converts every top-level element: bad ones fail here
    except _UNREADABLE as e:
        raise SplitError(f"{path}: not a readable DICOM Part 10 file ({e})") from e
    # pydicom reads what it can of a truncated file: the checks below catch the rest.
    transfer_syntax = source.file_meta.get("TransferSyntaxUID")
    sop_class, sop_instance = source.get("SOPClassUID"), source.get("SOPInstanceUID")
    if not (transfer_syntax and sop_class and sop_instance):
        raise SplitError(f"{path}: truncated or not a DICOM instance (no SOP or syntax UID)")
    if sop_class not in SINGLE_FRAME_CLASS:
        raise SplitError(f"{path}: {sop_class.name} is not an enhanced class we split")
    if "PixelData" not in source:
        raise SplitError(f"{path}: no pixel data (or the file is truncated)")
    try:
        frames = int(source.get("NumberOfFrames") or 1)
        per_frame = source.get("PerFrameFunctionalGroupsSequence") or []
        if len(per_frame) != frames:
            raise SplitError(f"{path}: {len(per_frame)} per-frame groups for {frames} frames")
        shared = (source.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
        decoded = get_decoder(transfer_syntax).iter_array(source)  # validates the length
        for n, (pixels, meta) in enumerate(decoded, start=1):
            frame = copy.deepcopy(template)
            # Shared first, so that a per-frame value of the same attribute wins.
            _flatten(frame, shared)
            _flatten(frame, per_frame[n - 1])
            _split_date_time(frame)
            _identify(frame, str(sop_class), str(sop_instance), n)
            _set_pixels(frame, pixels, meta)
            yield frame
    except (*_UNREADABLE, RuntimeError, NotImplementedError) as e:
        raise SplitError(f"{path}: pixel data or frame groups unreadable ({e})") from e


def _template(source: Dataset) -> Dataset:
    """The top-level attributes every frame shares: all but the multi-frame machinery."""
    template = Dataset()
    for element in source:
        if element.keyword not in _NOT_COPIED:
            template.add(copy.deepcopy(element))
    if "ImageType" in template:  # the fallback when no frame type macro says better
        template.ImageType = _image_type(template.ImageType)
    return template


def _flatten(frame: Dataset, groups: Dataset) -> None:
    """Set the single-frame attributes that the functional groups in `groups` carry."""
    for sequence, keywords in _LIFTED.items():
        item = _item(groups, sequence)
        for keyword in keywords if item is not None else ():
            if keyword in item:
                frame[keyword] = copy.deepcopy(item[keyword])
    for sequence, enhanced, single in _RENAMED:
        item = _item(groups, sequence)
        if item is not None and item.get(enhanced) not in (None, ""):
            _set_converted(frame, single, item.get(enhanced))
    # The legacy converted classes keep, as they were, the single-frame attributes that
    # no functional group took: they go back where they came from.
    for sequence in _UNASSIGNED:
        for element in _item(groups, sequence) or ():
            frame.add(copy.deepcopy(element))
    frame_type = _frame_type(groups)
    if frame_type:
        frame.ImageType = frame_type


def _split_date_time(frame: Dataset) -> None:
    """Single-frame CT and MR readers look at Acquisition Date and Time, not DateTime."""
    acquired = str(frame.get("AcquisitionDateTime") or "")
    if len(acquired) >= 8 and "AcquisitionDate" not in frame:
        frame.AcquisitionDate = acquired[:8]
        time = acquired[8:].split("+")[0].split("-")[0]  # no UTC offset in a TM
        if time:
            frame.AcquisitionTime = time


def _item(groups: Dataset, sequence: str) -> Dataset | None:
    value = groups.get(sequence)
    return value[0] if value else None


def _frame_type(groups: Dataset) -> list[str] | None:
    """Frame Type from whichever frame type macro the class uses (CT, MR, PET, XA...)."""
    for element in groups:
        if element.VR == "SQ" and element.value and "FrameType" in element.value[0]:
            return _image_type(element.value[0].FrameType)
    return None


def _image_type(values: Any) -> list[str]:
    """Enhanced Frame/Image Type has exactly 4 values; the 4th (derived pixel contrast) is
    NONE unless the pixels were derived, and the single-frame IODs want 2 or more values
    with no such 4th, so a NONE goes. The flavour (3rd, e.g. VOLUME) is kept as it is."""
    values = [values] if isinstance(values, str) else list(values)
    return values[:3] if values[3:4] == ["NONE"] else values[:4]


def _set_converted(frame: Dataset, keyword: str, value: Any) -> None:
    """Set `keyword` to `value`, converted to its VR (e.g. FD milliseconds to IS)."""
    vr = dictionary_VR(keyword)
    if vr == "IS":
        value = round(float(value))
    elif vr == "DS":
        value = DSfloat(value, auto_format=True)  # fits 16 characters
    setattr(frame, keyword, value)


def _identify(frame: Dataset, sop_class: str, sop_instance: str, n: int) -> None:
    frame.SOPClassUID = SINGLE_FRAME_CLASS[sop_class]
    frame.SOPInstanceUID = frame_uid(sop_instance, n)
    # The frame number, not original*1000+n: the frames of one enhanced instance are
    # usually its whole series at the archive, and the frame number is their order.
    frame.InstanceNumber = n
    # The derivation is recorded as the source frame: same pixels, same geometry.
    reference = Dataset()
    reference.ReferencedSOPClassUID = sop_class
    reference.ReferencedSOPInstanceUID = sop_instance
    reference.ReferencedFrameNumber = n
    reference.SpatialLocationsPreserved = "YES"
    frame.SourceImageSequence = [reference]
    frame.DerivationDescription = f"Frame {n} of an enhanced multi-frame image, unchanged"
    frame.file_meta = FileMetaDataset()
    frame.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    frame.file_meta.MediaStorageSOPClassUID = frame.SOPClassUID
    frame.file_meta.MediaStorageSOPInstanceUID = frame.SOPInstanceUID


def _set_pixels(frame: Dataset, pixels: Any, meta: dict[str, Any]) -> None:
    """Native little endian pixels; the decoder may have changed the colour space (YBR
    to RGB) and the planar configuration, so those follow what it returned."""
    frame.PhotometricInterpretation = meta["photometric_interpretation"]
    frame.BitsAllocated = meta["bits_allocated"]
    if meta["samples_per_pixel"] > 1:
        frame.PlanarConfiguration = meta["planar_configuration"]
    frame.PixelData = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    frame["PixelData"].VR = "OB" if meta["bits_allocated"] <= 8 else "OW"
