"""Forwarding by [[route]] rules and ``dicombox send``: to DCMTK storescp (as stored,
decompressed for an Implicit-only peer, compressed losslessly) and to Orthanc; a peer
that breaks off midway gets the rest later, and nothing it took is sent twice."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.orthanc import OrthancPeer
from tests.support.peers import free_port, popen, storescu
from tests.support.synthetic import ct_dataset
from tests.test_storage_peers import dataset_bytes


def remote(name: str, port: int, ae: str = "ARCHIVE", extra: str = "") -> str:
    return (
        f'[[remote]]\nname = "{name}"\nae_title = "{ae}"\nhost = "127.0.0.1"\n'
        f"port = {port}\nretry_delay_s = 1\n{extra}\n"
    )


def routed(name: str, when: str = "", storage: str = "") -> str:
    """A [storage] section (short forward delay, plus ``storage``) and one route."""
    return (
        f"[storage]\nforward_delay_s = 0.2\n{storage}\n"
        f'[[route]]\nwhen = {{ {when} }}\nforward = ["{name}"]\n'
    )


def jobs(box: RunningBox) -> list[dict]:
    return json.loads(box.cli("jobs", "--json").stdout)


def wait_jobs_settled(box: RunningBox, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = jobs(box)
        if found and all(j["state"] in ("done", "failed") for j in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"jobs still active: {jobs(box)}\n{box.output()[-3000:]}")


def ct_files(folder: Path, count: int, modality: str = "CT") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for n in range(count):
        ds = ct_dataset(study, series, n + 1, rows=32, columns=32)
        ds.Modality = modality
        path = folder / f"{modality}{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def storescp_peer(tmp_path):
    """Start DCMTK storescp with extra options; yields a starter, stops them all."""
    require("storescp", "storescu")
    started = []

    def start(*options: str, ae: str = "ARCHIVE", port: int = 0) -> tuple[int, Path]:
        port = port or free_port()
        out = tmp_path / f"received-{port}"
        out.mkdir(exist_ok=True)
        proc = popen(["storescp", "-aet", ae, *options, "-od", out, str(port)])
        started.append(proc)
        time.sleep(0.4)
        return port, out

    yield start
    for proc in started:
        proc.terminate()
        proc.wait()


def test_route_forwards_matching_instances_byte_identical(make_box, storescp_peer, tmp_path):
    port, out = storescp_peer("+xa")
    box = make_box(remote("pacs", port) + routed("pacs", 'modality = "CT"'))
    cts = ct_files(tmp_path / "ct", 5)
    mrs = ct_files(tmp_path / "mr", 2, modality="MR")
    assert storescu(box.port, [*cts, *mrs]).returncode == 0
    (job,) = wait_jobs_settled(box)
    assert job["state"] == "done" and "5 delivered" in job["progress"], job
    received = sorted(out.iterdir())
    assert len(received) == 5
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in cts}
    for path in received:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(path) == dataset_bytes(by_uid[uid])


@pytest.mark.parametrize(
    "sample",
    ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"],
)
def test_implicit_only_peer_gets_decompressed_pixels(make_box, storescp_peer, tmp_path, sample):
    port, out = storescp_peer("+xi")  # accepts Implicit VR Little Endian only
    box = make_box(remote("pacs", port))
    source = Path(get_testdata_file(sample))
    result = box.cli("send", "pacs", str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    (received,) = out.iterdir()
    got = pydicom.dcmread(received)
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert np.array_equal(got.pixel_array, pydicom.dcmread(source).pixel_array)


@pytest.mark.parametrize(
    "syntax,name,option",
    [
        ("1.2.840.10008.1.2.4.90", "j2k-lossless", "+xv"),
        ("1.2.840.10008.1.2.4.80", "jpegls-lossless", "+xt"),
        ("1.2.840.10008.1.2.5", "rle", "+xr"),
    ],
)
def test_lossless_compression_round_trips(make_box, storescp_peer, tmp_path, syntax, name, option):
    port, out = storescp_peer(option)
    box = make_box(remote("pacs", port, extra=f'transfer_syntaxes = ["{name}"]'))
    (source,) = ct_files(tmp_path / "ct", 1)
    assert storescu(box.port, [source]).returncode == 0
    study = pydicom.dcmread(source).StudyInstanceUID
    result = box.cli("send", "pacs", study)
    assert result.returncode == 0, result.stdout + result.stderr
    (received,) = out.iterdir()
    got = pydicom.dcmread(received)
    assert got.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(got.pixel_array, pydicom.dcmread(source).pixel_array)


def test_lossy_needs_the_remote_to_allow_it(make_box, storescp_peer, tmp_path):
    port, out = storescp_peer("+xw")  # JPEG 2000 lossy preferred
    box = make_box(remote("pacs", port, extra='transfer_syntaxes = ["j2k"]'))
    (source,) = ct_files(tmp_path / "ct", 1)
    result = box.cli("send", "pacs", str(source))
    assert result.returncode != 0 and list(out.iterdir()) == []


def test_forward_to_orthanc(make_box, tmp_path):
    require("storescu")
    orthanc = OrthancPeer(tmp_path / "orthanc").start()
    try:
        box = make_box(remote("orthanc", orthanc.dicom_port, ae="ORTHANC") + routed("orthanc"))
        cts = ct_files(tmp_path / "ct", 4)
        assert storescu(box.port, cts).returncode == 0
        (job,) = wait_jobs_settled(box)
        assert job["state"] == "done", job
        assert len(orthanc.rest("/instances")) == 4
    finally:
        orthanc.stop()


class FlakyArchive:
    """A pynetdicom storage SCP that aborts its first association after ``break_after``
    images, as a peer that crashes or loses its network midway would."""

    def __init__(self, port: int, break_after: int = -1, status: int = 0x0000) -> None:
        self.break_after = break_after
        self.status = status
        self.acknowledged: list[str] = []  # answered with success, in order
        self.associations = 0
        self.ae = AE(ae_title="ARCHIVE")
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.server = self.ae.start_server(
            ("127.0.0.1", port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self.on_store), (evt.EVT_ESTABLISHED, self.on_assoc)],
        )
        self.lock = threading.Lock()

    def on_assoc(self, event: evt.Event) -> None:
        self.associations += 1

    def on_store(self, event: evt.Event) -> int:
        with self.lock:
            if self.associations == 1 and len(self.acknowledged) == self.break_after:
                event.assoc.abort()
                return 0xA700
            self.acknowledged.append(str(event.request.AffectedSOPInstanceUID))
            return self.status

    def stop(self) -> None:
        self.server.shutdown()


def test_peer_that_breaks_off_gets_the_rest_and_nothing_twice(make_box, tmp_path):
    require("storescu")
    port = free_port()
    archive = FlakyArchive(port, break_after=7)
    try:
        box = make_box(remote("pacs", port) + routed("pacs"))
        cts = ct_files(tmp_path / "ct", 20)
        assert storescu(box.port, cts).returncode == 0
        (job,) = wait_jobs_settled(box)
    finally:
        archive.stop()
    assert job["state"] == "done" and job["attempts"] == 2, job
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in cts}
    assert set(archive.acknowledged) == sent
    assert len(archive.acknowledged) == len(sent)  # none acknowledged twice


def test_a_duplicate_at_the_peer_counts_as_delivered(make_box, tmp_path):
    require("storescu")
    port = free_port()
    archive = FlakyArchive(port, status=0x0111)  # "I have it already"
    try:
        box = make_box(remote("pacs", port) + routed("pacs"))
        assert storescu(box.port, ct_files(tmp_path / "ct", 3)).returncode == 0
        (job,) = wait_jobs_settled(box)
    finally:
        archive.stop()
    assert job["state"] == "done" and job["progress"] == "pacs: 3 delivered", job


def test_unreachable_peer_is_retried_until_it_answers(make_box, storescp_peer, tmp_path):
    # A forward carries images the box acknowledged: a peer that is down does not make
    # it give up after ``retries`` (that is for MPPS and commitment requests). It waits,
    # capped, saying why and until when, and delivers once the peer is back.
    require("storescu")
    port = free_port()
    box = make_box(
        remote("pacs", port, extra="retries = 1\nretry_delay_max_s = 1.5") + routed("pacs")
    )
    assert storescu(box.port, ct_files(tmp_path / "ct", 2)).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (job,) = jobs(box)
        if job["attempts"] >= 4 and job["state"] == "queued":
            break
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.2)
    assert "cannot reach" in job["last_error"]
    assert job["next_run_at"] - job["updated_at"] <= 1.5 + 0.1  # the cap, not 1 s doubled 3x
    assert " queued " in (table := box.cli("jobs").stdout) and "no limit" in table, table
    # nothing stored is lost meanwhile: the box still holds both and answers for them
    assert "2 instances" in box.cli("status").stdout
    _, received = storescp_peer(port=port)
    (job,) = wait_jobs_settled(box)
    assert job["state"] == "done" and job["progress"] == "pacs: 2 delivered", job
    assert len(list(received.iterdir())) == 2


def test_send_reports_unknown_remote_and_missing_study(make_box):
    box = make_box(remote("pacs", free_port()))
    assert "no [[remote]]" in box.cli("send", "nowhere", "1.2.3").stderr
    result = box.cli("send", "pacs", "1.2.3.4.5")
    assert result.returncode == 2 and "no such file, folder or stored study" in result.stderr


def enhanced_ct(path: Path, frames: int = 3) -> pydicom.Dataset:
    ds = ct_dataset(generate_uid(), generate_uid(), 1, rows=16, columns=16, frames=frames)
    measures = pydicom.Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 2.5
    shared = pydicom.Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = []
    for n in range(frames):
        position = pydicom.Dataset()
        position.ImagePositionPatient = [0, 0, n * 2.5]
        group = pydicom.Dataset()
        group.PlanePositionSequence = [position]
        ds.PerFrameFunctionalGroupsSequence.append(group)
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_enhanced_ct_goes_as_single_frames_to_a_remote_without_it(
    make_box, storescp_peer, tmp_path
):
    port, out = storescp_peer()
    box = make_box(
        remote(
            "pacs",
            port,
            extra='split_enhanced = true\nsop_classes = ["1.2.840.10008.5.1.4.1.1.2"]',
        )
    )
    source = enhanced_ct(tmp_path / "enhanced.dcm")
    assert storescu(box.port, [tmp_path / "enhanced.dcm"]).returncode == 0
    result = box.cli("send", "pacs", str(source.StudyInstanceUID))
    assert result.returncode == 0 and "1 delivered" in result.stdout, result.stdout + result.stderr
    received = sorted(
        (pydicom.dcmread(p) for p in out.iterdir()), key=lambda d: float(d.ImagePositionPatient[2])
    )
    assert [d.SOPClassUID for d in received] == ["1.2.840.10008.5.1.4.1.1.2"] * 3
    frames = pydicom.dcmread(tmp_path / "enhanced.dcm").pixel_array
    for n, frame in enumerate(received):
        assert np.array_equal(frame.pixel_array, frames[n])
    assert not list((box.data_dir / "tmp").glob("scratch-*"))  # frames are not kept
