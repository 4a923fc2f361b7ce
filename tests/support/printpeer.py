"""DCMTK's dcmprscp as the film printer on loopback: Debian's dcmpstat.cfg with its
folders moved into the test's and the IHEFULL printer (grayscale, 12 bit, Presentation
LUT, layouts up to 4,5) on a free port. Each film it prints becomes a Stored Print
object and Hardcopy Grayscale images in its database folder, which tests read back."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from tests.support.peers import free_port, popen, run

SOURCE_CONFIG = Path("/etc/dcmtk/dcmpstat.cfg")
STORED_PRINT = "1.2.840.10008.5.1.1.27"
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"


BOX_PRINTER = """
[BOX]
Aetitle = {ae_title}
Description = the box's print SCP
Hostname = localhost
Port = {port}
Type = PRINTER
DisplayFormat = 1,1\\1,2\\2,1\\2,2\\2,3\\3,3\\3,4\\3,5\\4,4\\4,5
FilmSizeID = 8INX10IN\\10INX12IN\\11INX14IN\\14INX14IN\\14INX17IN\\24CMX30CM
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
BorderDensity = BLACK\\WHITE
EmptyImageDensity = BLACK\\WHITE
MaxDensity = 320
MinDensity = 20
Supports12Bit = true
SupportsPresentationLUT = true
SupportsImageSize = true
SupportsTrim = true
ImplicitOnly = false
"""


class FilmPrinterPeer:
    """dcmprscp as a film printer (``start``), and DCMTK's print SCU tools driving a
    print SCP elsewhere (``print_to``: dcmpsprt lays out a film, dcmprscu sends it)."""

    ae_title = "IHEFULL"

    def __init__(self, folder: Path, box_port: int = 0, box_ae: str = "DICOMBOX") -> None:
        self.folder = folder
        self.box = (box_ae, box_port)
        self.port = free_port()
        self.database = folder / "database"
        self.proc: subprocess.Popen | None = None
        for name in ("database", "spool", "log"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        self.config = folder / "dcmpstat.cfg"

    def _write_config(self) -> None:
        text = SOURCE_CONFIG.read_text()
        text = re.sub(r"(?m)^Directory = spool$", f"Directory = {self.folder / 'spool'}", text)
        text = re.sub(r"(?m)^Directory = database$", f"Directory = {self.database}", text)
        text = re.sub(r"(?m)^LogDirectory = log$", f"LogDirectory = {self.folder / 'log'}", text)
        text = re.sub(
            r"(\[IHEFULL\][^\[]*?)Port = 10005", rf"\g<1>Port = {self.port}", text, flags=re.S
        )
        if self.box[1]:
            section = BOX_PRINTER.format(ae_title=self.box[0], port=self.box[1])
            text = text.replace("[[COMMUNICATION]]", "[[COMMUNICATION]]\n" + section, 1)
        self.config.write_text(text)

    def print_to(self, images: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
        """Lay ``images`` out on a film with dcmpsprt (``options`` such as ``-l 2 2``)
        and print it on the box's print SCP with dcmprscu."""
        self._write_config()
        made = run(["dcmpsprt", "-c", self.config, "-p", "BOX", *options, *images])
        if made.returncode != 0:
            return made
        (stored_print,) = [p for p in self.database.glob("SP_*.dcm")]
        sent = run(["dcmprscu", "-c", self.config, "-p", "BOX", "-v", stored_print])
        stored_print.unlink()  # the next film starts afresh
        return sent

    def start(self) -> FilmPrinterPeer:
        self._write_config()
        self.log = open(self.folder / "dcmprscp.out", "w")  # noqa: SIM115 - closed in stop()
        self.proc = popen(
            ["dcmprscp", "-c", self.config, "-p", self.ae_title, "-d"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if run(["echoscu", "-aec", self.ae_title, "127.0.0.1", self.port]).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"dcmprscp did not start: {self.output()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
            self.log.close()

    def output(self) -> str:
        path = self.folder / "dcmprscp.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def objects(self, sop_class: str) -> list[Dataset]:
        found = []
        for path in sorted(self.database.rglob("*")):
            if path.is_file() and path.suffix.lower() == ".dcm":
                ds = pydicom.dcmread(path)
                if str(ds.SOPClassUID) == sop_class:
                    found.append(ds)
        return found

    def films(self) -> list[Dataset]:
        """The Stored Print objects: one per film printed."""
        return self.objects(STORED_PRINT)

    def images(self) -> list[Dataset]:
        """The Hardcopy Grayscale images: one per image box printed."""
        return self.objects(HARDCOPY_GRAYSCALE)
