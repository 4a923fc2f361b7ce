"""Printers that take rendered film pages: PDF/PNG files (the simulator and the default
of the print server) and paper printers through CUPS (``lp``).

A page is a rendered film sheet, uint8 grey (H, W) or RGB (H, W, 3), at ``dpi``. A job
is the pages of one print session with its copies. ``status()`` answers in DICOM's
terms (Printer Status NORMAL / WARNING / FAILURE and a Printer Status Info defined
term), because that is what the box's print SCP tells modalities and what the panel
shows. The DICOM film printer, the third kind, is the print plugin's SCU.

The file printer is a simulator that does the real work: it writes the PDF or PNG files
an operator can open. In its folder, a file ``OFFLINE`` takes it offline, ``NO_PAPER``
empties its tray and ``LOW_PAPER`` makes it warn, as a test or a curious operator may.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from dicombox.hal.registry import DriverContext, Registry

MM_PER_INCH = 25.4


class PrinterError(Exception):
    """The printer cannot take the job now (offline, out of paper, gone)."""


@dataclass(frozen=True)
class PrinterStatus:
    status: str  # NORMAL | WARNING | FAILURE (Printer Status, 2110,0010)
    info: str  # a Printer Status Info (2110,0020) defined term: NORMAL, SUPPLY EMPTY …
    name: str = ""


@dataclass(frozen=True)
class PageJob:
    pages: list[np.ndarray]
    dpi: int
    copies: int = 1
    title: str = "film"


class Printer(Protocol):
    name: str

    def status(self) -> PrinterStatus: ...


class PagePrinter(Printer, Protocol):
    """A printer that takes rendered pages (the print plugin renders the films)."""

    def print_pages(self, job: PageJob) -> str:
        """Print the job; returns where it went (a file, a CUPS job id)."""
        ...


def _images(job: PageJob) -> list[Image.Image]:
    return [Image.fromarray(page) for page in job.pages]


class FilePrinter:
    """Each job as one PDF (a page per film, printed at its true size) or PNG files."""

    def __init__(self, folder: Path, fmt: str = "pdf", name: str = "file") -> None:
        if fmt not in ("pdf", "png"):
            raise ValueError(f"file printer format {fmt!r}: pdf or png")
        self.folder = Path(folder)
        self.fmt = fmt
        self.name = name

    def status(self) -> PrinterStatus:
        if (self.folder / "OFFLINE").exists():
            return PrinterStatus("FAILURE", "PRINTER OFFLINE", self.name)
        if (self.folder / "NO_PAPER").exists():
            return PrinterStatus("FAILURE", "SUPPLY EMPTY", self.name)
        if (self.folder / "LOW_PAPER").exists():
            return PrinterStatus("WARNING", "SUPPLY LOW", self.name)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return PrinterStatus("FAILURE", "PRINTER DOWN", self.name)
        if free < 50 << 20:
            return PrinterStatus("WARNING", "SUPPLY LOW", self.name)
        return PrinterStatus("NORMAL", "NORMAL", self.name)

    def print_pages(self, job: PageJob) -> str:
        state = self.status()
        if state.status == "FAILURE":
            raise PrinterError(f"{self.name}: {state.info.lower()}")
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{_safe(job.title)}"
        images = _images(job) * max(job.copies, 1)
        try:
            if self.fmt == "pdf":
                target = _unique(self.folder / f"{stem}.pdf")
                _write_atomically(target, lambda f: _save_pdf(images, f, job.dpi))
                return str(target)
            written = []
            for n, image in enumerate(images, start=1):
                target = _unique(self.folder / f"{stem}-{n}.png")
                _write_atomically(target, lambda f, i=image: i.save(f, "PNG", dpi=(job.dpi,) * 2))
                written.append(str(target))
            return ", ".join(written)
        except OSError as exc:
            raise PrinterError(f"{self.name}: cannot write the film: {exc}") from exc


def _save_pdf(images: list[Image.Image], path: Path, dpi: int) -> None:
    # resolution makes each PDF page the film's physical size.
    images[0].save(path, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary name, so a half-written film never looks printed."""
    partial = target.with_name(target.name + ".part")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _unique(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40] or "film"


class CupsPrinter:
    """A paper printer behind CUPS: ``lp`` prints, ``lpstat`` tells its state."""

    def __init__(self, queue: str = "", name: str = "paper") -> None:
        self.queue = queue  # "" = CUPS's default destination
        self.name = name

    def status(self) -> PrinterStatus:
        if not shutil.which("lp") or not shutil.which("lpstat"):
            return PrinterStatus("FAILURE", "PRINTER DOWN", self.name)
        args = ["lpstat", "-p", self.queue] if self.queue else ["lpstat", "-d", "-p"]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):  # CUPS hanging or gone
            return PrinterStatus("FAILURE", "PRINTER DOWN", self.name)
        text = done.stdout.lower()
        if done.returncode != 0 or "disabled" in text:
            return PrinterStatus("FAILURE", "PRINTER OFFLINE", self.name)
        return PrinterStatus("NORMAL", "NORMAL", self.name)

    def print_pages(self, job: PageJob) -> str:
        if not shutil.which("lp"):
            raise PrinterError(f"{self.name}: CUPS (lp) is not installed")
        with tempfile.TemporaryDirectory(prefix="dicombox-lp-") as tmp:
            pdf = Path(tmp) / "film.pdf"
            _save_pdf(_images(job), pdf, job.dpi)
            args = ["lp", "-n", str(max(job.copies, 1)), "-t", job.title, "-o", "fit-to-page"]
            if self.queue:
                args += ["-d", self.queue]
            try:
                done = subprocess.run([*args, str(pdf)], capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as exc:
                raise PrinterError(f"{self.name}: lp did not answer: {exc}") from exc
        if done.returncode != 0:
            raise PrinterError(f"{self.name}: lp refused the job: {done.stderr.strip()}")
        return done.stdout.strip()  # "request id is queue-12 (1 file(s))"


@dataclass(frozen=True)
class FilePrinterOptions:
    folder: str = ""  # where films go ("" = <data_dir>/print/<printer name>)
    format: Literal["pdf", "png"] = "pdf"


@dataclass(frozen=True)
class CupsPrinterOptions:
    queue: str = ""  # the lp destination ("" = CUPS's default)


def _open_file(options: FilePrinterOptions, context: DriverContext) -> FilePrinter:
    name = context.name or "file"
    folder = Path(options.folder) if options.folder else context.data_dir / "print" / name
    return FilePrinter(folder, options.format, name=name)


def _open_cups(options: CupsPrinterOptions, context: DriverContext) -> CupsPrinter:
    return CupsPrinter(options.queue, name=context.name or "paper")


# Page printers here; the print plugin adds the DICOM film printer ("dicom").
PRINTERS: Registry[Printer] = Registry("printer")
PRINTERS.register("file", _open_file, FilePrinterOptions)
PRINTERS.register("cups", _open_cups, CupsPrinterOptions)
