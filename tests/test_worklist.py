"""The box as worklist broker: DCMTK wlmscpfs as the RIS (worklist files the test writes,
and the examples Debian's dcmtk ships), findscu -W against the box, coercion of stored
files, and bad RIS replies that leave the cache as it was."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import ct_dataset

EXAMPLES = Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS")
TODAY = date.today().strftime("%Y%m%d")
MWL_FIND = "1.2.840.10008.5.1.4.31"


def worklist_dump(
    patient: str,
    patient_id: str,
    accession: str,
    modality: str = "CT",
    station: str = "DICOMBOX",
    day: str = TODAY,
    study_uid: str = "",
) -> str:
    return f"""(0008,0005) CS [ISO_IR 100]
(0008,0050) SH [{accession}]
(0008,0090) PN [REFERRER^RITA]
(0010,0010) PN [{patient}]
(0010,0020) LO [{patient_id}]
(0010,0030) DA [19600101]
(0010,0040) CS [F]
(0020,000d) UI [{study_uid or generate_uid()}]
(0032,1060) LO [CHEST CT]
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [{modality}]
(0040,0001) AE [{station}]
(0040,0002) DA [{day}]
(0040,0003) TM [101500]
(0040,0006) PN [TECH^TOM]
(0040,0007) LO [CHEST]
(0040,0009) SH [SPS-{accession}]
(0040,0010) SH [STATION1]
(0040,0011) SH [ROOM 1]
(fffe,e00d) -
(fffe,e0dd) -
(0040,1001) SH [RP-{accession}]
(0040,1003) SH [LOW]
"""


class Ris:
    """DCMTK wlmscpfs serving the .wl files of one folder under AE title RIS."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "RIS"
        self.folder.mkdir(parents=True)
        (self.folder / "lockfile").touch()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def add(self, name: str, dump: str) -> Path:
        source = self.folder.parent / f"{name}.dump"
        source.write_text(dump)
        target = self.folder / f"{name}.wl"
        result = run(["dump2dcm", "--write-dataset", source, target])
        assert result.returncode == 0, result.stderr
        return target

    def start(self) -> Ris:
        self.proc = popen(["wlmscpfs", "-dfp", self.folder.parent, str(self.port)])
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def ris(tmp_path):
    require("wlmscpfs", "dump2dcm", "findscu", "storescu")
    server = Ris(tmp_path / "ris")
    yield server
    server.stop()


def worklist_config(port: int, extra: str = "", interval_s: int = 5) -> str:
    return (
        f'[[remote]]\nname = "ris"\nae_title = "RIS"\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[worklist]\nris = "ris"\ninterval_s = {interval_s}\n{extra}\n'
    )


_runs = itertools.count()


def find_worklist(box: RunningBox, keys: list[str], *options: str) -> tuple[list[Dataset], str]:
    out = box.data_dir.parent / f"wl-{next(_runs)}"
    out.mkdir()
    args: list[object] = ["findscu", "-v", "-W", "-aec", "DICOMBOX", "-X", "-od", out, *options]
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", box.port])
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], result.stdout + result.stderr


def names(answers: list[Dataset]) -> list[str]:
    return sorted(str(a.PatientName) for a in answers)


SPS = "ScheduledProcedureStepSequence[0]"


def test_poll_then_findscu_W_with_matching(make_box, ris):
    ris.add("a", worklist_dump("DOE^ANNA", "P1", "A1"))
    ris.add("b", worklist_dump("DOE^BERT", "P2", "A2", modality="MR"))
    ris.add("c", worklist_dump("ROE^CARL", "P3", "A3", station="OTHER"))
    ris.add("old", worklist_dump("OLD^OSCAR", "P4", "A4", day="20200101"))
    ris.start()
    box = make_box(worklist_config(ris.port, 'station_ae = "*"'))
    refresh = box.cli("worklist", "refresh")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert "3 items from the RIS" in refresh.stdout  # the 2020 one is out of the window
    base = ["PatientName", "PatientID", "AccessionNumber", f"{SPS}.Modality"]
    answers, _ = find_worklist(box, base)
    assert names(answers) == ["DOE^ANNA", "DOE^BERT", "ROE^CARL"]
    answers, _ = find_worklist(box, ["PatientName=DOE*", f"{SPS}.Modality=CT"])
    assert names(answers) == ["DOE^ANNA"]
    answers, _ = find_worklist(box, ["PatientName", f"{SPS}.ScheduledStationAETitle=OTHER"])
    assert names(answers) == ["ROE^CARL"]
    answers, _ = find_worklist(
        box, ["PatientName", f"{SPS}.ScheduledProcedureStepStartDate={TODAY}-"]
    )
    assert len(answers) == 3
    answers, _ = find_worklist(
        box, ["PatientName", f"{SPS}.ScheduledProcedureStepStartDate=-20210101"]
    )
    assert answers == []
    (answer,) = find_worklist(box, ["AccessionNumber=A2", f"{SPS}.ScheduledProcedureStepID"])[0]
    assert answer.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "SPS-A2"


def test_new_item_shows_after_one_poll_and_vanished_one_retires(make_box, ris):
    first = ris.add("a", worklist_dump("DOE^ANNA", "P1", "A1"))
    ris.start()
    box = make_box(worklist_config(ris.port))
    deadline = time.monotonic() + 15
    while names(find_worklist(box, ["PatientName"])[0]) != ["DOE^ANNA"]:
        assert time.monotonic() < deadline, box.output()
        time.sleep(0.5)
    ris.add("b", worklist_dump("NEW^NINA", "P9", "A9"))
    first.unlink()
    deadline = time.monotonic() + 15  # the next poll is at most interval_s = 5 s away
    while names(find_worklist(box, ["PatientName"])[0]) != ["NEW^NINA"]:
        assert time.monotonic() < deadline, box.output()
        time.sleep(0.5)
    listing = box.cli("worklist", "list", "--all").stdout
    assert "DOE^ANNA" in listing and "retired" in listing


def test_dcmtk_example_worklist(make_box, ris):
    for dump in sorted(EXAMPLES.glob("*.dump")):
        ris.add(dump.stem, dump.read_text(errors="replace"))
    ris.start()
    # The examples are scheduled in the 1990s for stations AA32 … : ask for all of them.
    box = make_box(worklist_config(ris.port, 'station_ae = "*"\ndays_back = 20000'))
    refresh = box.cli("worklist", "refresh")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    answers, _ = find_worklist(box, ["PatientName", "PatientID"])
    assert len(answers) >= len(list(EXAMPLES.glob("*.dump")))
    answers, _ = find_worklist(box, ["PatientName=VIVALDI*", f"{SPS}.ScheduledStationAETitle=AA32"])
    assert names(answers) == ["VIVALDI^ANTONIO"]


def test_ris_down_keeps_the_cache(make_box, ris):
    ris.add("a", worklist_dump("DOE^ANNA", "P1", "A1"))
    ris.start()
    box = make_box(worklist_config(ris.port, interval_s=3600))
    assert box.cli("worklist", "refresh").returncode == 0
    ris.stop()
    failed = box.cli("worklist", "refresh")
    assert failed.returncode == 1 and "cannot associate with the RIS" in failed.stdout
    assert names(find_worklist(box, ["PatientName"])[0]) == ["DOE^ANNA"]
    assert "poll failed" in box.cli("status").stdout


def test_bad_items_are_left_out_and_named(make_box, tmp_path):
    """A pynetdicom RIS answers one good item, one without its SPS sequence and one in a
    character set nobody knows."""
    require("findscu")
    good = Dataset()
    good.PatientName, good.PatientID, good.AccessionNumber = "GOOD^GINA", "G1", "G1"
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = "CT", "DICOMBOX"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepID = TODAY, "S1"
    good.ScheduledProcedureStepSequence = [step]
    no_step = Dataset()
    no_step.PatientName, no_step.PatientID = "NOSTEP^NED", "N1"
    odd = Dataset()
    odd.update(good)
    odd.SpecificCharacterSet = "ISO_IR 999"
    odd.PatientID, odd.AccessionNumber = "O1", "O1"

    def on_find(event: evt.Event):
        for item in (good, no_step, odd):
            yield 0xFF00, item
        yield 0x0000, None

    ae = AE(ae_title="RIS")
    ae.add_supported_context(MWL_FIND)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)]
    )
    try:
        box = make_box(worklist_config(port, interval_s=3600))
        refresh = box.cli("worklist", "refresh")
    finally:
        server.shutdown()
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert "3 items from the RIS" in refresh.stdout and "2 left out" in refresh.stdout
    assert "no Scheduled Procedure Step Sequence" in refresh.stdout
    assert "unknown Specific Character Set 'ISO_IR 999'" in refresh.stdout
    assert names(find_worklist(box, ["PatientName"])[0]) == ["GOOD^GINA"]


def test_local_item_in_utf8_and_cancel(make_box):
    require("findscu")
    box = make_box()
    for n, name in enumerate(["MÜLLER^HANS", "SMITH^JO", "SMITH^AL"]):
        added = box.cli(
            "worklist", "add", "--patient-name", name, "--patient-id", f"L{n}", "--modality", "US"
        )
        assert added.returncode == 0, added.stderr
    answers, _ = find_worklist(box, ["PatientName=M*", "SpecificCharacterSet"])
    (answer,) = answers
    assert answer.SpecificCharacterSet == "ISO_IR 192" and str(answer.PatientName) == "MÜLLER^HANS"
    _, log = find_worklist(box, ["PatientName"], "--cancel", "1")
    assert "Cancel" in log, log


def test_images_without_accession_get_the_item_data(make_box, ris, tmp_path):
    study = generate_uid()
    ris.add("a", worklist_dump("WORK^LIST", "WL1", "ACC77", study_uid=study))
    ris.start()
    box = make_box(worklist_config(ris.port, interval_s=3600))
    assert box.cli("worklist", "refresh").returncode == 0
    ds = ct_dataset(
        study, generate_uid(), 1, rows=16, columns=16, patient="TEMP^NAME", patient_id="T1"
    )
    ds.AccessionNumber = ""  # present but empty, as modalities without a worklist send it
    del ds.StudyID
    sent = tmp_path / "sent.dcm"
    ds.save_as(sent, enforce_file_format=True)
    assert storescu(box.port, [sent]).returncode == 0
    (stored,) = (box.data_dir / "studies").rglob("*.dcm")
    got = pydicom.dcmread(stored)
    assert got.AccessionNumber == "ACC77"
    assert (str(got.PatientName), got.PatientID, got.PatientSex) == ("WORK^LIST", "WL1", "F")
    assert got.StudyID == "RP-ACC77"  # Requested Procedure ID -> Study ID
    assert got.PerformedProcedureStepID == "SPS-ACC77"
    (request,) = got.RequestAttributesSequence
    assert (request.AccessionNumber, request.ScheduledProcedureStepID) == ("ACC77", "SPS-ACC77")
    (original,) = got.OriginalAttributesSequence
    old = original.ModifiedAttributesSequence[0]
    assert (str(old.PatientName), old.PatientID) == ("TEMP^NAME", "T1")
    assert original.ReasonForTheAttributeModification == "COERCE"
    assert got.PixelData == ds.PixelData  # pixels untouched
    (row,) = json.loads(box.cli("studies", "--json").stdout)
    assert row["patient_id"] == "WL1"
    audit = (box.data_dir / "audit" / "audit.jsonl").read_text()
    assert '"instance-coerced"' in audit and "ACC77" in audit


def test_mpps_completed_forwards_the_study(make_box, tmp_path):
    """A route with on = "mpps-completed" sends the study when the modality says it is
    done, not image by image."""
    require("storescu", "storescp")
    dest_port = free_port()
    out = tmp_path / "archive"
    out.mkdir()
    archive = popen(["storescp", "-aet", "ARCHIVE", "-od", out, str(dest_port)])
    box = make_box(
        f'[[remote]]\nname = "pacs"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\nport = {dest_port}\n'
        '\n[[route]]\non = "mpps-completed"\nforward = ["pacs"]\n'
    )
    try:
        study = generate_uid()
        files = []
        for n in range(1, 4):
            path = tmp_path / f"{n}.dcm"
            ct_dataset(study, generate_uid(), n, rows=16, columns=16).save_as(
                path, enforce_file_format=True
            )
            files.append(path)
        assert storescu(box.port, files).returncode == 0
        time.sleep(1.5)
        assert list(out.iterdir()) == []  # stored is not enough for this route
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context("1.2.840.10008.3.1.2.3.3")
        assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
        step = Dataset()
        step.StudyInstanceUID = study
        create = Dataset()
        create.ScheduledStepAttributesSequence = [step]
        create.PerformedProcedureStepID = "PPS1"
        create.PerformedStationAETitle = "MODALITY"
        create.PerformedProcedureStepStartDate, create.PerformedProcedureStepStartTime = (
            TODAY,
            "101500",
        )
        create.PerformedProcedureStepStatus = "IN PROGRESS"
        create.Modality = "CT"
        create.PatientName, create.PatientID = "BENCH^CT", "B001"
        uid = generate_uid()
        status, _ = assoc.send_n_create(create, "1.2.840.10008.3.1.2.3.3", uid)
        assert status.Status == 0x0000
        done = Dataset()
        done.PerformedProcedureStepStatus = "COMPLETED"
        done.PerformedProcedureStepEndDate, done.PerformedProcedureStepEndTime = TODAY, "103000"
        status, _ = assoc.send_n_set(done, "1.2.840.10008.3.1.2.3.3", uid)
        assoc.release()
        assert status.Status == 0x0000
        deadline = time.monotonic() + 20
        while len(list(out.iterdir())) < 3:
            assert time.monotonic() < deadline, box.output()[-2000:]
            time.sleep(0.3)
    finally:
        archive.terminate()
        archive.wait()


def test_coercion_by_patient_and_step_of_a_local_item(make_box, tmp_path):
    require("storescu")
    box = make_box('[worklist]\ncoerce_by = ["patient_sps"]\n')
    added = box.cli(
        "worklist", "add", "--patient-name", "LOCAL^LUCY", "--patient-id", "LP1",
        "--modality", "CT", "--accession", "LOC1", "--sps-id", "STEP7",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    ds = ct_dataset(generate_uid(), generate_uid(), 1, rows=16, columns=16, patient_id="LP1")
    request = Dataset()
    request.ScheduledProcedureStepID = "STEP7"
    ds.RequestAttributesSequence = [request]
    ds.AccessionNumber = "WRONG"
    sent = tmp_path / "sent.dcm"
    ds.save_as(sent, enforce_file_format=True)
    assert storescu(box.port, [sent]).returncode == 0
    (stored,) = (box.data_dir / "studies").rglob("*.dcm")
    got = pydicom.dcmread(stored)
    assert (str(got.PatientName), got.AccessionNumber) == ("LOCAL^LUCY", "LOC1")
    assert (
        got.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].AccessionNumber == "WRONG"
    )


def test_worklist_on_its_own_ae_title(make_box):
    require("findscu", "echoscu")
    box = make_box('[worklist]\nscp_ae_title = "WORKLIST"\n')
    assert (
        box.cli(
            "worklist", "add", "--patient-name", "OWN^AE", "--patient-id", "W1", "--modality", "MR"
        ).returncode
        == 0
    )
    out = box.data_dir.parent / "own-ae"
    out.mkdir()
    result = run(
        ["findscu", "-W", "-aec", "WORKLIST", "-X", "-od", out, "-k", "PatientName",
         "127.0.0.1", box.port]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [str(pydicom.dcmread(p).PatientName) for p in out.glob("rsp*.dcm")] == ["OWN^AE"]
    assert run(["echoscu", "-aec", "WORKLIST", "127.0.0.1", box.port]).returncode == 0
    # On the box's own AE title the worklist is not offered.
    _, log = find_worklist(box, ["PatientName"])
    assert "No Acceptable Presentation Contexts" in log or "rejected" in log.lower(), log
