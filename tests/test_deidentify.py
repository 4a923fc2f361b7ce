"""De-identification on media export: the PS3.15 Basic profile, its options, and the seeds'
levels, on pydicom's bundled test files and a synthetic instance referencing one of them."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicombox.plugins.media.deidentify import _ACTIONS, LEVELS, Deidentifier, _profile

CT = "CT_small.dcm"
BUNDLED = (CT, "MR_small.dcm", "rtplan.dcm")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def read(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def referencing(ct: Dataset) -> Dataset:
    """A second instance of the CT's study and patient, pointing back at the CT image."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = ct.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = ct.FrameOfReferenceUID
    ds.Modality = "OT"
    ds.PatientName = ct.PatientName
    ds.PatientID = ct.PatientID
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.OtherPatientIDs = ["MRN-778899"]
    ds.PatientAddress = "1 Main Street, Springfield"
    ds.StudyDate = "20240102"
    ds.AccessionNumber = "ACC123"
    ds.InstitutionName = "St Elsewhere"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.OperatorsName = "Tech^Tina"
    ds.StationName = "CT-ROOM-2"
    ds.DeviceSerialNumber = "SN-42"
    ds.ImageComments = "patient fell off bike"
    ds.ReferencedImageSequence = Sequence([_reference(CT_IMAGE_STORAGE, ct.SOPInstanceUID)])
    ds.SourceImageSequence = Sequence([_reference(CT_IMAGE_STORAGE, ct.SOPInstanceUID)])
    ds.ReferencedImageSequence[0].private_block(0x0029, "ACME 1.0", create=True).add_new(
        0x01, "LO", "nested secret"
    )
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "House^Gregory")
    ds.add_new(0x60000010, "US", 16)  # overlay rows: overlays go as a group
    ds.add_new(0x60003000, "OW", b"\x00" * 32)
    ds.add_new(0x50000005, "US", 1)  # retired curve dimensions
    return ds


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def strings(ds: Dataset) -> set[str]:
    """Every text value anywhere in the data set, nested or multi-valued."""
    found: set[str] = set()
    for elem in ds.iterall():
        if elem.VR in ("SQ", "OB", "OW", "UN") or elem.value is None:
            continue
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        found.update(str(v) for v in values if str(v))
    return found


def codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def test_every_table_keyword_is_a_dicom_keyword():
    for level in LEVELS:
        _profile(level)  # raises for a misspelt keyword
    assert len(_ACTIONS) >= 80


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        Deidentifier("paranoid")


def test_none_leaves_the_data_set_alone():
    ds = read(CT)
    assert Deidentifier("none").apply(ds) == read(CT)


@pytest.mark.parametrize("name", BUNDLED)
def test_basic_removes_identifying_attributes(name):
    original = read(name)
    ds = Deidentifier("basic").apply(read(name))

    assert ds.PatientName == "ANONYMOUS"
    assert ds.PatientID and ds.PatientID != original.PatientID
    gone = {
        str(original.PatientName),
        original.PatientID,
        *(str(original.get(k)) for k in ("InstitutionName", "StationName") if original.get(k)),
        *(str(original.get(k)) for k in ("OperatorsName", "DeviceSerialNumber") if k in original),
    }
    assert not gone & strings(ds)
    for keyword in ("PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert not ds.get(keyword)
    for keyword in ("InstitutionName", "StationName", "OperatorsName", "PatientSex"):
        assert not ds.get(keyword)
    for keyword in ("OtherPatientIDsSequence", "PatientAge", "PatientWeight", "ImageComments"):
        assert keyword not in ds
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES"
    assert "Basic Profile" in ds.DeidentificationMethod
    assert codes(ds) == ["113100"]
    assert ds.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"


def test_basic_cleans_nested_items():
    ds = Deidentifier("basic").apply(read("rtplan.dcm"))
    beam = ds.BeamSequence[0]
    assert not beam.InstitutionName
    assert beam.DeviceSerialNumber != "9999"
    assert "InstitutionalDepartmentName" not in beam


def test_basic_on_a_synthetic_instance():
    ds = Deidentifier("basic", patient_name="CASE^7", patient_id="CASE7").apply(
        referencing(read(CT))
    )
    assert (ds.PatientName, ds.PatientID) == ("CASE^7", "CASE7")
    for keyword in ("OtherPatientIDs", "PatientAddress", "ImageComments", "PatientAge"):
        assert keyword not in ds
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert not any(elem.tag.group in (0x5000, 0x6000) for elem in ds)
    assert not {"House^Gregory", "Tech^Tina", "St Elsewhere", "CT-ROOM-2", "SN-42"} & strings(ds)
    assert not ds.StudyDate and not ds.PatientBirthDate and not ds.AccessionNumber


def test_uids_are_remapped_consistently_across_instances():
    ct, other = read(CT), referencing(read(CT))
    original = read(CT)
    deidentifier = Deidentifier("basic")
    deidentifier.apply(ct)
    deidentifier.apply(other)

    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert ct[keyword].value != original[keyword].value
        assert ct[keyword].value.startswith("2.25.")
    assert other.StudyInstanceUID == ct.StudyInstanceUID
    assert other.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert other.SeriesInstanceUID != ct.SeriesInstanceUID
    assert other.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert other.SourceImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    # What an object is stays as it was: only instance UIDs identify anyone.
    assert ct.SOPClassUID == original.SOPClassUID
    assert other.ReferencedImageSequence[0].ReferencedSOPClassUID == CT_IMAGE_STORAGE
    assert other.file_meta.MediaStorageSOPInstanceUID == other.SOPInstanceUID
    assert ct.file_meta.MediaStorageSOPInstanceUID == ct.SOPInstanceUID
    assert ct.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_two_exports_do_not_share_new_uids_or_ids():
    first, second = Deidentifier("basic"), Deidentifier("basic")
    a, b = first.apply(read(CT)), second.apply(read(CT))
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.PatientID != b.PatientID


def test_one_patient_keeps_one_id_within_an_export():
    deidentifier = Deidentifier("basic")
    ct, other, mr = (
        deidentifier.apply(read(CT)),
        deidentifier.apply(referencing(read(CT))),
        deidentifier.apply(read("MR_small.dcm")),
    )
    assert ct.PatientID == other.PatientID != mr.PatientID


@pytest.mark.parametrize("level", ["basic", "full", "reduced"])
def test_pixel_data_is_untouched(level):
    original = read(CT)
    ds = Deidentifier(level).apply(read(CT))
    assert ds.PixelData == original.PixelData
    assert (ds.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize("level", LEVELS)
def test_result_saves_and_rereads(level, tmp_path: Path):
    deidentifier = Deidentifier(level)
    for number, ds in enumerate((read(CT), referencing(read(CT)), read("rtplan.dcm"))):
        deidentifier.apply(ds)
        path = tmp_path / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        again = pydicom.dcmread(path)
        assert again.SOPInstanceUID == ds.SOPInstanceUID
        assert again.PatientName == ds.PatientName
        if level != "none":
            assert again.DeidentificationMethod == ds.DeidentificationMethod


def test_reduced_keeps_dates_and_patient_characteristics():
    original = read(CT)
    ds = Deidentifier("reduced").apply(read(CT))
    assert ds.StudyDate == original.StudyDate
    assert ds.ContentDate == original.ContentDate
    assert ds.AcquisitionTime == original.AcquisitionTime
    assert ds.PatientSex == original.PatientSex
    assert ds.PatientAge == original.PatientAge
    assert ds.PatientWeight == original.PatientWeight
    assert codes(ds) == ["113100", "113106", "113108"]
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    # Still the Basic profile otherwise.
    assert ds.PatientName == "ANONYMOUS"
    assert not ds.InstitutionName
    assert ds.StudyInstanceUID != original.StudyInstanceUID
    assert not any(elem.tag.is_private for elem in ds.iterall())


def test_reduced_still_removes_the_birth_date():
    ds = Deidentifier("reduced").apply(referencing(read(CT)))
    assert not ds.PatientBirthDate
    assert ds.StudyDate == "20240102"
    assert ds.PatientAge == "064Y"


def test_full_removes_dates_and_characteristics():
    ds = Deidentifier("full").apply(read(CT))
    assert not ds.StudyDate and not ds.StudyTime
    assert not ds.PatientSex
    assert "PatientAge" not in ds and "PatientWeight" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert codes(ds) == ["113100"]


def test_full_also_clears_what_the_table_does_not_name():
    basic = Deidentifier("basic").apply(read("rtplan.dcm"))
    full = Deidentifier("full").apply(read("rtplan.dcm"))
    assert basic.RTPlanDate == "20030903"  # not in the Basic profile subset table
    assert not full.RTPlanDate and not full.RTPlanTime
    assert "SetupTechniqueDescription" not in full.PatientSetupSequence[0]


def test_service_replaces_only_the_patient_identity():
    original = read(CT)
    ds = Deidentifier("service", patient_name="SERVICE^CASE").apply(read(CT))
    assert ds.PatientName == "SERVICE^CASE"
    assert ds.PatientID != original.PatientID
    assert "OtherPatientIDsSequence" not in ds
    assert not ds.PatientBirthDate
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "InstitutionName"):
        assert ds[keyword].value == original[keyword].value
    assert ds.StudyDate == original.StudyDate
    assert ds.StationName == original.StationName
    assert any(elem.tag.is_private for elem in ds)
    # Only the name and IDs went, so the object does not claim to be de-identified.
    assert ds.PatientIdentityRemoved == "NO"
    assert "DeidentificationMethodCodeSequence" not in ds


def test_service_on_a_synthetic_instance():
    ds = Deidentifier("service").apply(referencing(read(CT)))
    assert "OtherPatientIDs" not in ds and not ds.PatientBirthDate
    assert ds.InstitutionName == "St Elsewhere"
    assert ds.ReferringPhysicianName == "House^Gregory"


def test_earlier_deidentification_history_is_kept():
    ds = referencing(read(CT))
    ds.DeidentificationMethod = "site anonymizer v2"
    ds.DeidentificationMethodCodeSequence = Sequence([Dataset()])
    ds.DeidentificationMethodCodeSequence[0].CodeValue = "113107"
    Deidentifier("basic").apply(ds)
    assert ds.DeidentificationMethod[0] == "site anonymizer v2"
    assert len(ds.DeidentificationMethod) == 2
    assert codes(ds) == ["113107", "113100"]
