"""The printer HAL: the file printer writes real PDF and PNG films and reports the
states an operator sets up in its folder; CUPS without ``lp`` says so clearly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dicombox.hal.printer import CupsPrinter, FilePrinter, PageJob, PrinterError


def page(value: int = 128) -> np.ndarray:
    return np.full((200, 160), value, dtype=np.uint8)


def test_a_pdf_job_has_a_page_per_film_and_copy_at_the_films_size(tmp_path: Path) -> None:
    printer = FilePrinter(tmp_path, "pdf")
    where = printer.print_pages(PageJob([page(0), page(255)], dpi=20, copies=2, title="CT 1/2"))
    pdf = Path(where)
    data = pdf.read_bytes()
    assert pdf.parent == tmp_path and data.startswith(b"%PDF") and b"/Count 4" in data
    assert b"/MediaBox [ 0 0 576.0 720.0 ]" in data  # 160 x 200 px at 20 dpi: 8 x 10 inches
    assert not list(tmp_path.glob("*.part"))


def test_png_films_keep_their_pixels(tmp_path: Path) -> None:
    where = FilePrinter(tmp_path, "png").print_pages(PageJob([page(7)], dpi=50))
    (png,) = tmp_path.glob("*.png")
    assert str(png) == where
    assert np.array_equal(np.asarray(Image.open(png)), page(7))


@pytest.mark.parametrize(
    ("flag", "status", "info"),
    [
        ("OFFLINE", "FAILURE", "PRINTER OFFLINE"),
        ("NO_PAPER", "FAILURE", "SUPPLY EMPTY"),
        ("LOW_PAPER", "WARNING", "SUPPLY LOW"),
    ],  # fmt: skip
)
def test_file_printer_states(tmp_path: Path, flag: str, status: str, info: str) -> None:
    printer = FilePrinter(tmp_path)
    assert printer.status().status == "NORMAL"
    (tmp_path / flag).touch()
    state = printer.status()
    assert (state.status, state.info) == (status, info)
    if status == "FAILURE":
        with pytest.raises(PrinterError, match=info.lower()):
            printer.print_pages(PageJob([page()], dpi=50))
        assert not list(tmp_path.glob("*.pdf"))  # nothing half-printed


def test_a_folder_that_cannot_be_written_is_a_printer_down(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert FilePrinter(blocked / "films").status().info == "PRINTER DOWN"


def test_cups_without_lp_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))  # no lp, no lpstat
    printer = CupsPrinter("ward-3")
    assert printer.status().status == "FAILURE"
    with pytest.raises(PrinterError, match="lp\\) is not installed"):
        printer.print_pages(PageJob([page()], dpi=50))


def test_cups_prints_through_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ``lp`` records its arguments and the PDF it was given."""
    log = tmp_path / "lp.log"
    for name, body in (("lp", f'printf "%s " "$@" > {log}; cp "${{@: -1}}" {tmp_path}/got.pdf; '
                               'echo "request id is ward-3-12 (1 file(s))"'),
                       ("lpstat", 'echo "printer ward-3 is idle."')):  # fmt: skip
        tool = tmp_path / name
        tool.write_text(f"#!/bin/bash\n{body}\n")
        os.chmod(tool, 0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    printer = CupsPrinter("ward-3")
    assert printer.status().status == "NORMAL"
    assert printer.print_pages(PageJob([page()], dpi=50, copies=3)).startswith("request id")
    args = log.read_text()
    assert "-d ward-3" in args and "-n 3" in args
    assert (tmp_path / "got.pdf").read_bytes().startswith(b"%PDF")
