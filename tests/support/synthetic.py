"""Synthetic DICOM objects made on the spot, so tests and benchmarks need no data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicombox.core.identity import IMPLEMENTATION_CLASS_UID


def ct_dataset(
    study_uid: str,
    series_uid: str,
    number: int,
    rows: int = 512,
    columns: int = 512,
    frames: int = 1,
    patient: str = "BENCH^CT",
    patient_id: str = "B001",
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.SOPClassUID = CTImageStorage if frames == 1 else "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientName, ds.PatientID = patient, patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261123", "101500", "ACC1"
    ds.StudyID, ds.StudyDescription = "1", "synthetic"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    if frames > 1:
        ds.NumberOfFrames = frames
    rng = np.random.default_rng(number)
    pixels = rng.integers(0, 4096, size=(frames, rows, columns), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def write_ct_series(directory: Path, count: int, **kwargs: object) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for n in range(1, count + 1):
        path = directory / f"ct{n:04d}.dcm"
        ct_dataset(study, series, n, **kwargs).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_multiframe(path: Path, megabytes: int) -> Path:
    frames = max(1, megabytes * 1024 * 1024 // (512 * 512 * 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    ct_dataset(generate_uid(), generate_uid(), 1, frames=frames).save_as(
        path, enforce_file_format=True
    )
    return path
