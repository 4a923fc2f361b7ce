"""Print benchmark: a 20-film job (4x5 CT layout on 14INX17IN) rendered and sent to DCMTK
dcmprscp, by dicombox and by DCMTK's own print SCU tools, side by side.

dicombox: what a print job does with stored instances (read, rescale and window each
image to 12-bit print values, lay out films of 20 images) and the print SCU sending the
films on one association. DCMTK: ``dcmpsprt`` renders each film from the same files
(Hardcopy Grayscale images and a Stored Print object) and ``dcmprscu`` prints it. Both
print on the same dcmprscp (IHEFULL: 12 bit, up to 4,5). Prints wall time and the ratio
dicombox/DCMTK (lower is better; 1.0 = as fast as DCMTK).

    .venv/bin/python -m bench.print [--films 20] [--rounds 3] [--size 512]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread

from bench.alternate import Measure, side_by_side
from dicombox.core.config import RemoteSection, load_config
from dicombox.plugins.print import render
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film
from dicombox.plugins.print.scu import print_films
from tests.support.printpeer import FilmPrinterPeer
from tests.support.synthetic import write_ct_series

PER_FILM = 20  # STANDARD\4,5


def time_dicombox(files: list[Path], peer: FilmPrinterPeer) -> float:
    config = load_config(None)
    remote = RemoteSection(name="camera", ae_title=peer.ae_title, host="127.0.0.1", port=peer.port)
    start = time.perf_counter()
    films = []
    for first in range(0, len(files), PER_FILM):
        boxes = [
            render.image_box_from_dataset(dcmread(path), n, bits=12)
            for n, path in enumerate(files[first : first + PER_FILM], start=1)
        ]
        films.append(Film(display_format="STANDARD\\4,5", film_size="14INX17IN", images=boxes))
    report = print_films(config, remote, films, v.GENERIC)
    elapsed = time.perf_counter() - start
    assert report.films == len(films), report
    return elapsed


def time_dcmtk(files: list[Path], peer: FilmPrinterPeer) -> float:
    # dcmpsprt and dcmprscu work from a database of their own, as a modality's would.
    modality = FilmPrinterPeer(peer.folder / "modality", box_port=peer.port, box_ae=peer.ae_title)
    start = time.perf_counter()
    for first in range(0, len(files), PER_FILM):
        chunk = files[first : first + PER_FILM]
        sent = modality.print_to(chunk, "-q", "-l", "4", "5", "--filmsize", "14INX17IN")
        assert sent.returncode == 0, sent.stdout + sent.stderr
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicombox-pbench-") as tmp:
        work = Path(tmp)
        count = args.films * PER_FILM
        files = write_ct_series(work / "files", count, rows=args.size, columns=args.size)

        def with_fresh_printer(measure: Callable[[list[Path], FilmPrinterPeer], float]) -> Measure:
            def run(n: int) -> float:
                folder = work / f"peer-{n}-{measure.__name__}"
                peer = FilmPrinterPeer(folder).start()
                try:
                    return measure(files, peer)
                finally:
                    peer.stop()
                    shutil.rmtree(folder, ignore_errors=True)

            return run

        a, b = side_by_side(
            args.rounds, with_fresh_printer(time_dicombox), with_fresh_printer(time_dcmtk)
        )
        print(f"{args.films} films of 20 CT images ({args.size}x{args.size}x16 bit) on "
              f"14INX17IN, median of {args.rounds} rounds")  # fmt: skip
        print(f"render + print: dicombox {a:6.2f} s, dcmpsprt + dcmprscu {b:6.2f} s, "
              f"ratio {a / b:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
