"""Ingest benchmark: dicombox against DCMTK's storescp, side by side, in one run.

200 synthetic 512x512x16-bit CT images are sent by DCMTK storescu (TCP_NODELAY=1, max PDU
131072) over 1 and over 4 concurrent associations, to dicombox and to ``storescp --fork``
writing to disk, in rounds that time each peer in turn (the order changing from round to
round), each after the same untimed warm-up (eight one-image associations of another
study). Prints images/s for each and the ratio
dicombox/DCMTK. Then four associations each send a 200 MB multi-frame object to dicombox
while the box's resident memory is sampled.

storescp never flushes what it writes; dicombox fsyncs each file, and its folder where the
file system needs that, before it answers 0000. ``--durable-peer`` adds a third peer to
each round: the same storescp with ``fsync_on_close.c`` preloaded, which makes the same
flushes as storescp closes each file (built with the machine's C compiler), so the two are
also compared doing the same job.

    make bench            # or: .venv/bin/python -m bench.ingest [--images 200] [--mb 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from dicombox.core.filesystems import file_fsync_makes_its_name_durable
from tests.support.boxproc import RunningBox, rss_kib
from tests.support.peers import free_port, popen, storescu
from tests.support.synthetic import write_ct_series, write_multiframe

PDU = ["--max-pdu", "131072", "--max-send-pdu", "131072"]


def send_parallel(port: int, files: list[Path], associations: int, aec: str) -> float:
    """Wall-clock seconds to send ``files`` split over ``associations`` storescu runs."""
    chunks = [files[i::associations] for i in range(associations)]
    results: list[int] = []
    # What the peer timed before left unflushed must not be written back in this one's
    # window: storescp leaves each run's 100 MB in the page cache.
    os.sync()
    start = time.perf_counter()

    def one(chunk: list[Path]) -> None:
        results.append(storescu(port, chunk, aec=aec, extra=PDU, timeout=600).returncode)

    threads = [threading.Thread(target=one, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if any(results):
        raise RuntimeError(f"storescu failed: exit codes {results}")
    return elapsed


def warm_up(port: int, warm: list[Path], aec: str) -> None:
    """Untimed: one-image associations of another study, several at once so that every
    network worker of the box gets some. Both peers are then timed in their steady state
    (a box's worker prepares its index statements on its first series)."""
    send_parallel(port, warm, len(warm), aec)


def build_fsync_shim() -> Path:
    """``fsync_on_close.c`` built in a folder of its own (not under ``--dir``, which may
    forbid executing what is in it): preloaded, it makes storescp flush as the box does."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--durable-peer needs a C compiler (cc) to build fsync_on_close.c")
    shim = Path(tempfile.mkdtemp(prefix="dicombox-bench-shim-")) / "fsync_on_close.so"
    source = Path(__file__).with_name("fsync_on_close.c")
    build = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", shim, source, "-ldl"]
    subprocess.run(build, check=True)
    return shim


def measure_dcmtk(
    work: Path,
    files: list[Path],
    associations: int,
    warm: list[Path],
    shim: Path | None = None,
) -> float:
    out = work / f"storescp-{associations}{'-durable' if shim else ''}"
    out.mkdir()
    port = free_port()
    env = {}
    if shim:
        # The folder's flush only where the box makes it too (see core/filesystems.py).
        folder = "0" if file_fsync_makes_its_name_durable(out) else "1"
        preload = " ".join(p for p in (str(shim), os.environ.get("LD_PRELOAD")) if p)
        env = {"LD_PRELOAD": preload, "FSYNC_ON_CLOSE_FOLDER": folder}
    proc = popen(["storescp", "--fork", *PDU[:2], "-od", out, str(port)], env=env)
    time.sleep(0.5)
    try:
        if shim and str(shim) not in Path(f"/proc/{proc.pid}/maps").read_text():
            # ld.so ignores a library it cannot load, with a line on stderr only.
            raise SystemExit(f"storescp did not load {shim}: no durable peer to time")
        warm_up(port, warm, "STORESCP")
        return send_parallel(port, files, associations, "STORESCP")
    finally:
        proc.terminate()
        proc.wait()


def measure_dicombox(
    work: Path, files: list[Path], associations: int, workers: int, warm: list[Path]
) -> float:
    with RunningBox(work / f"box-{associations}", workers=workers) as box:
        warm_up(box.port, warm, "DICOMBOX")
        return send_parallel(box.port, files, associations, "DICOMBOX")


def peak_rss(work: Path, megabytes: int, associations: int = 4) -> tuple[int, int, float]:
    """(peak summed RSS of all box processes, peak of one process) in MiB, and seconds."""
    objects = [write_multiframe(work / f"mf{i}.dcm", megabytes) for i in range(associations)]
    with RunningBox(work / "box-rss") as box:
        pids = box.pids()
        peak_sum = peak_one = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_sum, peak_one
            while not done.is_set():
                values = [rss_kib(p) for p in pids]
                peak_sum, peak_one = max(peak_sum, sum(values)), max(peak_one, max(values))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        seconds = send_parallel(box.port, objects, associations, "DICOMBOX")
        done.set()
        sampler.join()
    return peak_sum // 1024, peak_one // 1024, seconds


DURABLE = "storescp+fsync"
PEERS = ("dicombox", "storescp", DURABLE)


def _round(rates: dict[str, list[float]], r: int) -> str:
    box = rates["dicombox"][r]
    return ", ".join(
        [f"{name} {rate[r]:7.1f} images/s" for name, rate in rates.items()]
        + [f"ratio to {name} {box / rates[name][r]:.2f}" for name in rates if name != "dicombox"]
    )


def _summary(rates: dict[str, list[float]]) -> str:
    """Each peer's median rate, and the median of the rounds' ratios dicombox/peer (the
    rates of one round were measured under the same load)."""
    box = rates["dicombox"]
    medians = [f"{name} {statistics.median(rate):7.1f} images/s" for name, rate in rates.items()]
    ratios = [
        f"ratio to {name} {statistics.median(b / p for b, p in zip(box, rate, strict=True)):.2f}"
        for name, rate in rates.items()
        if name != "dicombox"
    ]
    return ", ".join(medians + ratios)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--mb", type=int, default=200, help="size of each multi-frame object")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (median)")
    parser.add_argument("--workers", type=int, default=0, help="network workers (0: per core)")
    parser.add_argument(
        "--dir",
        help="where both peers write (default: a temporary folder); "
        "the same file system for both keeps the comparison fair",
    )
    parser.add_argument(
        "--durable-peer",
        action="store_true",
        help="also time storescp made to fsync each file and its folder, as dicombox does",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        files = write_ct_series(work / "ct", args.images)
        warm = write_ct_series(work / "warm", 8)
        shim = build_fsync_shim() if args.durable_peer else None
        peers = [name for name in PEERS if shim or name != DURABLE]
        # Each round times the peers in another order, all orders in turn: none always
        # runs after the same one.
        orders = list(itertools.permutations(peers))
        print(f"{len(files)} CT images of {files[0].stat().st_size / 1e6:.2f} MB each")
        for associations in (1, 4):
            rates: dict[str, list[float]] = {name: [] for name in peers}
            for r in range(args.rounds):
                run_dir = work / f"a{associations}-r{r}"
                run_dir.mkdir()
                measure = {
                    "dicombox": partial(
                        measure_dicombox, run_dir, files, associations, args.workers, warm
                    ),
                    "storescp": partial(measure_dcmtk, run_dir, files, associations, warm),
                }
                if shim:
                    measure[DURABLE] = partial(
                        measure_dcmtk, run_dir, files, associations, warm, shim
                    )
                for name in orders[r % len(orders)]:
                    rates[name].append(len(files) / measure[name]())
                print(f"  round {r + 1}, {associations} association(s): {_round(rates, r)}")
            summary = _summary(rates)
            print(f"{associations} association(s), medians of {args.rounds} rounds: {summary}")
        total, one, seconds = peak_rss(work, args.mb)
        print(
            f"4 x {args.mb} MB multi-frame in {seconds:.1f} s: peak RSS of the box "
            f"{total} MiB in all processes, {one} MiB in the largest"
        )


if __name__ == "__main__":
    main()
