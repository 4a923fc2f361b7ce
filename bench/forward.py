"""Forwarding benchmark: dicombox delivering a stored study against DCMTK storescu sending
the same files, both to DCMTK storescp (TCP_NODELAY=1), side by side in one run.

200 synthetic 512x512x16-bit CT images are stored in a box; then, for storescp's default
16 KB maximum PDU and for 128 KB, it times (a) the box's forwarding path (the one a
forward job runs: index lookup, one association, streamed C-STOREs, deliveries recorded)
and (b) ``storescu`` sending the original files. Prints images/s and the ratio
dicombox/storescu (higher is better; 1.0 = as fast as DCMTK).

    .venv/bin/python -m bench.forward [--images 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import pydicom

from bench.alternate import side_by_side
from dicombox.core.box import load_plugins_and_config, open_box
from dicombox.plugins.storage.forward import send_to_remote, stored_files
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, popen, storescu
from tests.support.synthetic import write_ct_series

SIZES = {"16 KB": 16384, "128 KB": 131072}


def start_storescp(folder: Path, port: int, max_pdu: int):
    folder.mkdir(parents=True, exist_ok=True)
    proc = popen(
        ["storescp", "-aet", "ARCHIVE", "--max-pdu", str(max_pdu), "-od", folder, str(port)]
    )
    time.sleep(0.5)
    return proc


def time_box(work: Path, files: list[Path], port: int, label: str) -> float:
    config = work / f"forward-{port}.toml"
    config.write_text(
        f'[box]\ndata_dir = "{work / "box"}"\n\n'
        f'[[remote]]\nname = "archive"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    box = open_box(*load_plugins_and_config(config))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    items = stored_files(box, uids)
    assert len(items) == len(files), "the box does not hold every image"
    start = time.perf_counter()
    report = send_to_remote(box, "archive", items, lambda text: None)
    elapsed = time.perf_counter() - start
    assert len(report.delivered) == len(files), report.summary
    return elapsed


def time_storescu(files: list[Path], port: int) -> float:
    start = time.perf_counter()
    result = storescu(port, files, aec="ARCHIVE", timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(result.stdout + result.stderr)
    return elapsed


def with_fresh_storescp(
    who: str, work: Path, files: list[Path], port: int, label: str, n: int
) -> float:
    """One timed send by ``who`` (the box or storescu) to a storescp of its own, writing
    to an empty folder, so neither sender profits from the other's files."""
    peer = start_storescp(work / f"out-{port}-{n}-{who}", port, SIZES[label])
    try:
        if who == "box":
            return time_box(work, files, port, label)
        return time_storescu(files, port)
    finally:
        peer.terminate()
        peer.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-fbench-") as tmp:
        work = Path(tmp)
        files = write_ct_series(work / "files", args.images)
        with RunningBox(work / "box") as box:
            assert storescu(box.port, files).returncode == 0
        print(f"{args.images} CT images of 512x512x16 bit, median of {args.rounds} rounds")
        for label in SIZES:
            port = free_port()

            box_s, dcmtk_s = side_by_side(
                args.rounds,
                partial(with_fresh_storescp, "box", work, files, port, label),
                partial(with_fresh_storescp, "dcmtk", work, files, port, label),
            )
            ours, theirs = args.images / box_s, args.images / dcmtk_s
            print(
                f"max PDU {label:>6}: dicombox {ours:7.1f} img/s, storescu {theirs:7.1f} img/s, "
                f"ratio {ours / theirs:.2f}"
            )


if __name__ == "__main__":
    main()
