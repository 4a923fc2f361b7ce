"""Media benchmark: DICOMDIR + ISO image for a 1000-image study, dicombox against DCMTK,
side by side on the same files.

dicombox: ``build_fileset`` (each instance written into the file-set in the profile's
syntax, the DICOMDIR, the PDI files) and ``master_iso`` (pycdlib), as a burn job runs
them. DCMTK: copy the files under DICOM file IDs (what a file-set creator must write
too), ``dcmmkdir`` over them, then ``xorriso -as mkisofs``. Prints wall time for each
and the ratio dicombox/DCMTK (target ≤ 1.5).

    .venv/bin/python -m bench.media [--images 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.alternate import side_by_side
from dicombox.plugins.media.fileset import build_fileset
from dicombox.plugins.media.iso import master_iso
from tests.support.synthetic import write_ct_series


def time_dicombox(files: list[Path], work: Path) -> float:
    folder, iso = work / "box-disc", work / "box.iso"
    start = time.perf_counter()
    report = build_fileset(files, folder, "STD-GEN-CD")
    master_iso(folder, iso, "DICOMBOX")
    elapsed = time.perf_counter() - start
    assert report.written == len(files), report.refused[:3]
    shutil.rmtree(folder)
    iso.unlink()
    return elapsed


def time_dcmtk(files: list[Path], work: Path) -> float:
    folder, iso = work / "dcmtk-disc", work / "dcmtk.iso"
    start = time.perf_counter()
    images = folder / "DICOM" / "ST000001" / "SE000001"
    images.mkdir(parents=True)
    for n, path in enumerate(files, start=1):
        shutil.copyfile(path, images / f"IM{n:06d}")
    subprocess.run(
        ["dcmmkdir", "-q", "+id", str(folder), "+D", str(folder / "DICOMDIR"), "+r", "DICOM"],
        cwd=folder,
        check=True,
    )
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(folder)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder)
    iso.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-mbench-") as tmp:
        work = Path(tmp)
        files = write_ct_series(work / "files", args.images)
        a, b = side_by_side(
            args.rounds, lambda n: time_dicombox(files, work), lambda n: time_dcmtk(files, work)
        )
        print(f"{args.images} CT images of 512x512x16 bit, median of {args.rounds} rounds")
        print(f"DICOMDIR + ISO: dicombox {a:6.2f} s, dcmmkdir + xorriso {b:6.2f} s, "
              f"ratio {a / b:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
