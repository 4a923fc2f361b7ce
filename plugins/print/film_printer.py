"""The DICOM film printer: a ``[[remote]]`` that is a Basic Print SCP, printed on through
the print SCU. It is the printers' driver "dicom", registered here, next to the page
printers of the HAL (files, CUPS); unlike them it takes films, not rendered pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from dicombox.core.config import Config, RemoteSection
from dicombox.core.jobs import PermanentJobError
from dicombox.hal.printer import PRINTERS, PrinterStatus
from dicombox.hal.registry import DriverContext
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film
from dicombox.plugins.print.scu import PrintError, PrintReport, print_films, query_printer


@runtime_checkable
class FilmPrinter(Protocol):
    """A printer that takes films (image boxes, 12 bits of grey) rather than pages: the
    box lays out nothing for it but what ``send_as = "page"`` asks."""

    name: str

    def status(self) -> PrinterStatus: ...

    def print_films(
        self,
        films: list[Film],
        capabilities: v.Capabilities,
        warning_policy: str,
        progress: Callable[[str], None],
        printed: Callable[[int], None],
    ) -> PrintReport: ...


@dataclass(frozen=True)
class DicomPrinterOptions:
    remote: str = ""  # the [[remote]] that is the film printer

    def validate(self, name: str) -> None:
        if not self.remote:
            raise ValueError("needs remote, a [[remote]] name")


class DicomFilmPrinter:
    def __init__(self, config: Config, remote: str, name: str) -> None:
        self.config = config
        self.remote_name = remote
        self.name = name

    @property
    def remote(self) -> RemoteSection | None:
        return self.config.remote_named(self.remote_name)

    def status(self) -> PrinterStatus:
        """The printer's N-GET Printer answer, on an association of its own."""
        remote = self.remote
        if remote is None:
            return PrinterStatus("FAILURE", "ELEC CONFIG ERR", self.name)
        try:
            state = query_printer(self.config, remote)
        except PrintError:
            return PrinterStatus("FAILURE", "PRINTER OFFLINE", self.name)
        return PrinterStatus(state.status, state.info, self.name)

    def print_films(
        self,
        films: list[Film],
        capabilities: v.Capabilities,
        warning_policy: str,
        progress: Callable[[str], None],
        printed: Callable[[int], None],
    ) -> PrintReport:
        remote = self.remote
        if remote is None:
            raise PermanentJobError(f"printer {self.name}: no [[remote]] {self.remote_name!r}")
        return print_films(
            self.config, remote, films, capabilities, warning_policy, progress, printed
        )


def _open(options: DicomPrinterOptions, context: DriverContext) -> DicomFilmPrinter:
    box: Any = context.host  # the print plugin opens its printers with the box
    return DicomFilmPrinter(box.config, options.remote, context.name or options.remote)


PRINTERS.register("dicom", _open, DicomPrinterOptions)
