"""Query and retrieve benchmark: dicombox against Orthanc and DCMTK dcmqrscp, side by side.

1. C-FIND latency. The same synthetic archive (default 100 000 instances: 2 000 patients ×
   2 studies × 5 series × 5 images) goes into dicombox through its index API and into
   Orthanc (SQLite) through storescu. Four study-level queries are timed, each as a
   whole association from the same pynetdicom client, median of --repeat runs: by
   Patient ID, by name wildcard, by a one-month date range, and a range that matches
   1 000 studies. Prints each median and the ratio dicombox/Orthanc (≤ 1.0 is the target).
2. C-MOVE throughput. A 500-image study is moved to DCMTK storescp from dicombox and from
   dcmqrscp holding the same study. Prints images/s and the ratio (≥ 0.8 is the target).

    .venv/bin/python -m bench.query [--instances 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicombox.core.index.engine import close_engine, open_engine, sqlite_url
from dicombox.core.index.study_index import StudyIndex
from tests.support.boxproc import RunningBox
from tests.support.orthanc import OrthancPeer
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import ct_dataset

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
SURNAMES = ["SMITH", "JONES", "MULLER", "GARCIA", "ROSSI", "DUBOIS", "NOVAK", "SATO"]


def archive(instances: int) -> list[Dataset]:
    """Headers of the synthetic archive (8×8 pixels, so files stay small)."""
    patients = max(1, instances // 50)
    out = []
    for p in range(patients):
        for s in range(2):
            study = generate_uid()
            day = (p * 2 + s) % 2000
            date = f"{2020 + day // 336:04d}{1 + day % 336 // 28:02d}{1 + day % 28:02d}"
            for e in range(5):
                series = generate_uid()
                for i in range(5):
                    ds = ct_dataset(
                        study,
                        series,
                        i + 1,
                        rows=8,
                        columns=8,
                        patient=f"{SURNAMES[p % 8]}^P{p}",
                        patient_id=f"ID{p:06d}",
                    )
                    ds.StudyDate, ds.SeriesNumber = date, e + 1
                    out.append(ds)
    return out[:instances]


def load_box_index(data_dir: Path, datasets: list[Dataset]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(sqlite_url(data_dir.resolve()))
    index = StudyIndex(engine)
    for n, ds in enumerate(datasets):
        index.add_instance(
            ds,
            path=f"bench/{n}.dcm",
            size=0,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            calling_ae="BENCH",
        )
    close_engine(engine)


def write_files(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        path = folder / f"{n:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def find_latency(port: int, aec: str, query: Dataset, repeat: int) -> tuple[float, int]:
    """Median seconds for one whole C-FIND association, and the number of matches."""
    times, matches = [], 0
    for _ in range(repeat):
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(STUDY_ROOT_FIND)
        start = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title=aec)
        matches = sum(
            1
            for status, _ in assoc.send_c_find(query, STUDY_ROOT_FIND)
            if status and status.Status in (0xFF00, 0xFF01)
        )
        assoc.release()
        times.append(time.perf_counter() - start)
    return statistics.median(times), matches


def queries(patients: int) -> dict[str, Dataset]:
    def study(**keys: str) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ds.PatientName = ds.PatientID = ds.StudyDate = ""
        for k, v in keys.items():
            setattr(ds, k, v)
        return ds

    return {
        "by Patient ID": study(PatientID=f"ID{min(123, patients - 1):06d}"),
        "by name wildcard": study(PatientName="NOVAK^P12*"),
        "by a month": study(StudyDate="20210101-20210131"),
        "1000 matches": study(StudyDate="20200101-20211231"),
    }


def bench_find(work: Path, datasets: list[Dataset], repeat: int) -> None:
    load_box_index(work / "box", datasets)
    files = write_files(work / "files", datasets)
    orthanc = OrthancPeer(work / "orthanc")
    orthanc.modalities["bench"] = ("BENCH", "127.0.0.1", 1)
    orthanc.start()
    try:
        for start in range(0, len(files), 2000):  # storescu takes a few thousand per run
            assert (
                storescu(
                    orthanc.dicom_port, files[start : start + 2000], aec="ORTHANC", timeout=3600
                ).returncode
                == 0
            )
        with RunningBox(work / "box") as box:
            for name, query in queries(max(1, len(datasets) // 50)).items():
                ours, n_ours = find_latency(box.port, "DICOMBOX", query, repeat)
                theirs, n_theirs = find_latency(orthanc.dicom_port, "ORTHANC", query, repeat)
                print(
                    f"C-FIND {name:17s}: dicombox {ours * 1000:7.1f} ms ({n_ours} matches), "
                    f"Orthanc {theirs * 1000:7.1f} ms ({n_theirs}), ratio {ours / theirs:.2f}"
                )
    finally:
        orthanc.stop()


def move_rate(send: Callable[[], None], images: int) -> float:
    start = time.perf_counter()
    send()
    return images / (time.perf_counter() - start)


def bench_move(work: Path, images: int) -> None:
    study, series = generate_uid(), generate_uid()
    data = work / "move-study"
    files = write_files(
        data, [ct_dataset(study, series, n, rows=512, columns=512) for n in range(1, images + 1)]
    )
    dest_port = free_port()
    qr_port = free_port()
    db = work / "qrdb"
    db.mkdir()
    config = work / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {qr_port}\nMaxPDUSize = 131072\nMaxAssociations = 16\n"
        f"HostTable BEGIN\ndest = (DEST, 127.0.0.1, {dest_port})\nHostTable END\n"
        f"VendorTable BEGIN\nVendorTable END\nAETable BEGIN\n"
        f"ARCHIVE {db} RW (2000, 4096mb) ANY\nAETable END\n"
    )
    qr = popen(["dcmqrscp", "-c", config])
    out = work / "dest"
    out.mkdir()
    dest = popen(
        ["storescp", "-aet", "DEST", "-od", out, "--max-pdu", "131072", str(dest_port)],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.7)
    try:
        assert storescu(qr_port, files, aec="ARCHIVE").returncode == 0
        with RunningBox(
            work / "mbox",
            f'[[remote]]\nname = "dest"\nae_title = "DEST"\n'
            f'host = "127.0.0.1"\nport = {dest_port}\n',
        ) as box:
            assert storescu(box.port, files).returncode == 0

            def move_from(port: int, aec: str) -> Callable[[], None]:
                return lambda: run(
                    [
                        "movescu",
                        "-S",
                        "-aec",
                        aec,
                        "-aem",
                        "DEST",
                        "-k",
                        "QueryRetrieveLevel=STUDY",
                        "-k",
                        f"StudyInstanceUID={study}",
                        "127.0.0.1",
                        str(port),
                    ],
                    timeout=3600,
                )

            ours = max(move_rate(move_from(box.port, "DICOMBOX"), images) for _ in range(2))
            theirs = max(move_rate(move_from(qr_port, "ARCHIVE"), images) for _ in range(2))
        print(
            f"C-MOVE of {images} CT images to storescp: dicombox {ours:.1f} images/s, "
            f"dcmqrscp {theirs:.1f} images/s, ratio {ours / theirs:.2f}"
        )
    finally:
        for proc in (qr, dest):
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--move-images", type=int, default=500)
    parser.add_argument("--skip-find", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-qbench-") as tmp:
        work = Path(tmp)
        if not args.skip_find:
            datasets = archive(args.instances)
            print(f"archive: {len(datasets)} instances")
            bench_find(work, datasets, args.repeat)
        bench_move(work, args.move_images)


if __name__ == "__main__":
    main()
