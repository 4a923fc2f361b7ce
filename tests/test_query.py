"""C-FIND against DCMTK's findscu: every matching kind, both root models, character sets,
cancel, limits and bad queries."""

from __future__ import annotations

import itertools
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.uid import generate_uid

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import run, storescu
from tests.support.synthetic import ct_dataset

STUDIES = [
    # patient name, id, study date, time, modalities per series, accession
    ("DOE^JOHN", "P1", "20260110", "101500", ["CT", "CT", "MR"], "A100"),
    ("DOE^JANE", "P2", "20260215", "230000", ["CT"], "A200"),
    ("SMITH^ANNA", "P3", "20251231", "081000.500", ["US"], "B300"),
]


def make_studies(directory: Path) -> dict[str, list[pydicom.Dataset]]:
    directory.mkdir()
    made: dict[str, list[pydicom.Dataset]] = {}
    counter = itertools.count(1)
    for name, pid, date, time_, modalities, accession in STUDIES:
        study = generate_uid()
        made[pid] = []
        for number, modality in enumerate(modalities, start=1):
            series = generate_uid()
            ds = ct_dataset(
                study, series, number, rows=16, columns=16, patient=name, patient_id=pid
            )
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, time_, accession
            ds.Modality, ds.SeriesNumber, ds.SeriesDescription = (
                modality,
                number,
                f"{modality} {number}",
            )
            _add_sequences(ds, pid, number)
            ds.save_as(directory / f"i{next(counter):03d}.dcm", enforce_file_format=True)
            made[pid].append(ds)
    for charset_file in ("chrH31.dcm", "chrFren.dcm"):  # Japanese (ISO 2022 IR 87), French
        (source,) = get_charset_files(charset_file)
        ds = pydicom.dcmread(source)
        ds.save_as(directory / charset_file, enforce_file_format=True)
    return made


def _add_sequences(ds: pydicom.Dataset, pid: str, number: int) -> None:
    """Sequence keys of the seeds' series and image tables, different per series."""
    request = pydicom.Dataset()
    request.RequestedProcedureID = f"RP{pid}{number}"
    request.ScheduledProcedureStepID = f"SPS{pid}"
    ds.RequestAttributesSequence = [request]
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator = ("113691", "DCM") if number == 1 else ("X", "99")
    code.CodeMeaning = "IHE Key Image" if number == 1 else "other"
    ds.ConceptNameCodeSequence = [code]


@pytest.fixture(scope="module")
def qr_box(tmp_path_factory):
    require("storescu", "findscu")
    root = tmp_path_factory.mktemp("qr")
    made = make_studies(root / "data")
    box = RunningBox(root / "var").start()
    result = storescu(box.port, sorted((root / "data").iterdir()))
    assert result.returncode == 0, result.stdout + result.stderr
    box.made = made
    yield box
    box.stop()


def find(
    box, keys: list[str], model: str = "-S", out: Path | None = None, extra: list[str] | None = None
) -> tuple[list[pydicom.Dataset], str]:
    """Run findscu; return the responses (as datasets) and its log."""
    out = out or Path(box.data_dir.parent / f"find-{next(_runs)}")
    out.mkdir()
    args = ["findscu", "-v", model, "-aec", "DICOMBOX", "-X", "-od", out, *(extra or [])]
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", box.port])
    answers = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return answers, result.stdout + result.stderr


_runs = itertools.count()


def values(answers: list[pydicom.Dataset], keyword: str) -> list[str]:
    return sorted(str(a.get(keyword, "")) for a in answers)


def test_patient_root_patient_level_by_id(qr_box):
    answers, log = find(
        qr_box,
        [
            "QueryRetrieveLevel=PATIENT",
            "PatientID=P1",
            "PatientName",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedInstances",
        ],
        model="-P",
    )
    assert "Final Find Response (Success)" in log
    (answer,) = answers
    assert str(answer.PatientName) == "DOE^JOHN"
    assert (answer.NumberOfPatientRelatedStudies, answer.NumberOfPatientRelatedInstances) == (1, 3)


def test_wildcard_name_matches_by_component(qr_box):
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "PatientName=DOE*", "PatientID"])
    assert values(answers, "PatientID") == ["P1", "P2"]
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "PatientName=*^J?NE", "PatientID"])
    assert values(answers, "PatientID") == ["P2"]
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "PatientName=DOE*JOHN", "PatientID"])
    assert answers == []  # * never reaches across the ^ between family and given name


def test_date_range_and_open_ranges(qr_box):
    answers, _ = find(
        qr_box, ["QueryRetrieveLevel=STUDY", "StudyDate=20260101-20260131", "PatientID"]
    )
    assert values(answers, "PatientID") == ["P1"]
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "StudyDate=20260101-", "PatientID"])
    assert values(answers, "PatientID") == ["P1", "P2"]
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "StudyDate=-20251231", "PatientID"])
    assert values(answers, "PatientID") == ["P3"]


def test_time_matched_by_meaning(qr_box):
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "StudyTime=08", "PatientID"])
    assert values(answers, "PatientID") == ["P3"]  # 08 means 08:00:00 to 08:59:59.999999
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "StudyTime=1000-2259", "PatientID"])
    assert values(answers, "PatientID") == ["P1"]


def test_date_and_time_ranges_make_one_span(qr_box):
    # 31 Dec 2025 12:00 to 15 Feb 2026 23:00: P1 (10 Jan, 10:15) is inside although 10:15 is
    # outside 12-23 h; P3 (31 Dec, 08:10) is before the start.
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=STUDY",
            "StudyDate=20251231-20260215",
            "StudyTime=1200-2300",
            "PatientID",
        ],
    )
    assert values(answers, "PatientID") == ["P1", "P2"]


def test_uid_list_and_single_value(qr_box):
    uids = [qr_box.made["P1"][0].StudyInstanceUID, qr_box.made["P3"][0].StudyInstanceUID]
    answers, _ = find(
        qr_box, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={chr(92).join(uids)}", "PatientID"]
    )
    assert values(answers, "PatientID") == ["P1", "P3"]
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "AccessionNumber=A200", "PatientID"])
    assert values(answers, "PatientID") == ["P2"]


def test_study_return_keys(qr_box):
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=STUDY",
            "PatientID=P1",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "RetrieveAETitle",
            "InstanceAvailability",
            "StudyDescription",
        ],
    )
    (answer,) = answers
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"] or set(answer.ModalitiesInStudy) == {
        "CT",
        "MR",
    }
    assert (answer.NumberOfStudyRelatedSeries, answer.NumberOfStudyRelatedInstances) == (3, 3)
    assert (answer.RetrieveAETitle, answer.InstanceAvailability) == ("DICOMBOX", "ONLINE")
    assert answer.StudyDescription == "synthetic"


def test_modalities_in_study_matches_any_series(qr_box):
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR", "PatientID"])
    assert values(answers, "PatientID") == ["P1"]


def test_series_and_image_levels(qr_box):
    study = qr_box.made["P1"][0].StudyInstanceUID
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study}",
            "Modality=CT",
            "SeriesInstanceUID",
            "NumberOfSeriesRelatedInstances",
        ],
    )
    assert len(answers) == 2 and values(answers, "NumberOfSeriesRelatedInstances") == ["1", "1"]
    series = qr_box.made["P1"][2].SeriesInstanceUID
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={series}",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        ],
    )
    (answer,) = answers
    assert answer.SOPInstanceUID == qr_box.made["P1"][2].SOPInstanceUID


def test_sequence_matching(qr_box):
    study = qr_box.made["P1"][0].StudyInstanceUID
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study}",
            "SeriesInstanceUID",
            "RequestAttributesSequence[0].RequestedProcedureID=RPP1*",
            "RequestAttributesSequence[0].ScheduledProcedureStepID=SPSP1",
        ],
    )
    assert len(answers) == 3
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study}",
            "SeriesInstanceUID",
            "RequestAttributesSequence[0].RequestedProcedureID=RPP12",
            "RequestAttributesSequence[0].ScheduledProcedureStepID",
        ],
    )
    (answer,) = answers
    assert answer.SeriesInstanceUID == qr_box.made["P1"][1].SeriesInstanceUID
    (item,) = answer.RequestAttributesSequence
    assert item.RequestedProcedureID == "RPP12" and item.ScheduledProcedureStepID == "SPSP1"
    # An item key of the image table, across all studies: only the key images match.
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={qr_box.made['P1'][0].SeriesInstanceUID}",
            "SOPInstanceUID",
            "ConceptNameCodeSequence[0].CodeValue=113691",
            "ConceptNameCodeSequence[0].CodingSchemeDesignator=DCM",
        ],
    )
    assert [a.SOPInstanceUID for a in answers] == [qr_box.made["P1"][0].SOPInstanceUID]
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={qr_box.made['P1'][1].SeriesInstanceUID}",
            "SOPInstanceUID",
            "ConceptNameCodeSequence[0].CodeValue=113691",
        ],
    )
    assert answers == []
    # A universal (empty) sequence key returns the whole stored sequence.
    answers, _ = find(
        qr_box,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={qr_box.made['P1'][0].SeriesInstanceUID}",
            "ConceptNameCodeSequence",
        ],
    )
    (answer,) = answers
    assert answer.ConceptNameCodeSequence[0].CodeMeaning == "IHE Key Image"


def test_character_sets_are_decoded_and_answered(qr_box):
    (japanese,) = get_charset_files("chrH31.dcm")
    expected = str(pydicom.dcmread(japanese).PatientName)
    answers, _ = find(
        qr_box,
        ["QueryRetrieveLevel=STUDY", "PatientName=Yamada*", "SpecificCharacterSet"],
    )
    (answer,) = answers
    assert str(answer.PatientName) == expected  # the ideographic groups survive
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    (french,) = get_charset_files("chrFren.dcm")
    name = str(pydicom.dcmread(french).PatientName)
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", f"PatientName={name[:3]}*"])
    assert [str(a.PatientName) for a in answers] == [name]


def test_key_below_level_and_bad_level_are_refused(qr_box):
    _, log = find(qr_box, ["QueryRetrieveLevel=STUDY", "SeriesInstanceUID", "PatientID"])
    assert "0106" in log or "Unknown Status: 0x106" in log
    _, log = find(qr_box, ["QueryRetrieveLevel=WARD", "PatientID"])
    assert "DataSetDoesNotMatchSOPClass" in log  # A900
    _, log = find(qr_box, ["QueryRetrieveLevel=PATIENT", "PatientID"], model="-S")
    assert "DataSetDoesNotMatchSOPClass" in log  # no PATIENT level in Study Root
    answers, _ = find(qr_box, ["QueryRetrieveLevel=STUDY", "PatientID=P2"])
    assert len(answers) == 1  # and it keeps serving


def test_cancel_after_first_response(make_box, tmp_path):
    require("storescu", "findscu")
    data = tmp_path / "many"
    data.mkdir()
    study = generate_uid()
    for n in range(300):  # one series each: 300 SERIES-level matches
        ds = ct_dataset(study, generate_uid(), n, rows=8, columns=8)
        ds.save_as(data / f"s{n:03d}.dcm", enforce_file_format=True)
    box = make_box()
    assert storescu(box.port, sorted(data.iterdir())).returncode == 0
    answers, log = find(
        box,
        ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}", "SeriesInstanceUID"],
        out=tmp_path / "o",
        extra=["--cancel", "1"],
    )
    assert "Received Final Find Response (Cancel" in log
    assert 1 <= len(answers) < 300


def test_max_matches_ends_with_a700(make_box, tmp_path):
    require("storescu", "findscu")
    data = tmp_path / "few"
    make_studies(data)
    box = make_box("[qr]\nmax_matches = 2\n")
    assert storescu(box.port, sorted(data.iterdir())).returncode == 0
    answers, log = find(box, ["QueryRetrieveLevel=STUDY", "PatientID"], out=tmp_path / "o")
    assert len(answers) == 2
    assert "more than 2 matches" in log or "a700" in log.lower()


def test_unsupported_optional_key_warns_ff01(qr_box):
    answers, log = find(
        qr_box,
        ["QueryRetrieveLevel=STUDY", "PatientID=P1", "RequestedProcedureDescription"],
        extra=["-d"],
    )
    assert len(answers) == 1
    assert "DIMSE Status                  : 0xff01" in log


def test_extended_negotiation_relational_and_fuzzy_names(qr_box):
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

    study_root = "1.2.840.10008.5.1.4.1.2.2.1"
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = study_root
    item.service_class_application_information = b"\x01\x01\x01\x01"
    ae = AE(ae_title="FUZZY")
    ae.add_requested_context(study_root)
    assoc = ae.associate("127.0.0.1", qr_box.port, ae_title="DICOMBOX", ext_neg=[item])
    assert assoc.is_established
    (reply,) = assoc.acceptor.sop_class_extended.items()
    assert reply == (study_root, b"\x01\x01\x01\x00")  # no timezone adjustment
    query = Dataset()
    query.QueryRetrieveLevel, query.PatientName, query.PatientID = "STUDY", "doe*", ""
    found = [
        ds.PatientID
        for status, ds in assoc.send_c_find(query, study_root)
        if status.Status in (0xFF00, 0xFF01)
    ]
    assoc.release()
    assert sorted(found) == ["P1", "P2"]  # lower case matched DOE^... once fuzzy
