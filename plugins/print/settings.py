"""The [print], [[printer]] and [[printer_template]] configuration sections.

A printer template says what a printer model can do; a printer descriptor (a
``[[printer]]``) says where one printer is and how it prints by default, as seed 000's
Printer Template and Printer Descriptor files do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dicombox.core.config import ConfigError, check_choice, check_other_keys, load_part, other_keys
from dicombox.hal.printer import PRINTERS
from dicombox.plugins.print import film_printer  # noqa: F401  (registers the "dicom" driver)


@dataclass(frozen=True)
class PrintSection:
    default_printer: str = ""  # a [[printer]] name; "" = the first, else the built-in "pdf"
    # A film printer answering Printer Status WARNING: go on (and report it), or treat it
    # as FAILURE as seed 000 does.
    warning: Literal["continue", "fail"] = "continue"
    retries: int = 5  # the seeds' default: 5 tries, 180 s apart
    retry_delay_s: float = 180.0
    scp: bool = True  # the print server: modalities print to the box
    scp_ae_title: str = ""  # its own called AE title ("" = the box's)
    scp_printer: str = ""  # where films printed to the box go ("" = default_printer)
    idle_s: float = 60.0  # a route with print = "<printer>" prints a study idle this long
    annotate: bool = True  # patient, date and institution on films the box lays out
    dpi: int = 150  # rendering resolution of films for paper and files

    def validate(self, name: str) -> None:
        if self.retries < 0 or self.retry_delay_s < 0:
            raise ConfigError(f"[{name}] retries and retry_delay_s must be >= 0")
        if not 50 <= self.dpi <= 600:
            raise ConfigError(f"[{name}] dpi = {self.dpi}: between 50 and 600")


@dataclass(frozen=True)
class PrinterTemplateSection:
    """What a printer model supports. Empty lists: anything the standard defines."""

    name: str = ""
    film_sizes: list[str] = field(default_factory=list)
    medium_types: list[str] = field(default_factory=list)
    magnifications: list[str] = field(default_factory=list)
    max_columns: int = 10  # of STANDARD\C,R (and the longest ROW/COL)
    max_rows: int = 10
    min_density: int = 0  # hundredths of optical density the printer can make
    max_density: int = 400
    color: bool = False
    dpi: int = 300
    bits: int = 12  # 8 or 12: the grey depth it takes

    def validate(self, name: str) -> None:
        from dicombox.plugins.print.printers import capabilities_of

        if not self.name:
            raise ConfigError(f"[{name}] needs a name")
        try:
            capabilities_of(self)
        except ValueError as exc:
            raise ConfigError(f"[{name}] {exc}") from None


@dataclass(frozen=True)
class PrinterSection:
    """One printer and the defaults of what is printed on it."""

    name: str = ""
    # dicom: a film printer, a [[remote]]; cups: a paper printer (lp); file: PDF/PNG files;
    # or a plugin's driver, which reads its own keys from here
    driver: str = "file"
    remote: str = ""  # for dicom
    queue: str = ""  # for cups: the lp destination ("" = the default)
    folder: str = ""  # for file: where films go ("" = <data_dir>/print/<name>)
    format: Literal["pdf", "png"] = "pdf"  # for file
    template: str = ""  # a [[printer_template]] name; "" = anything the standard allows
    film_size: str = "14INX17IN"
    layout: str = "STANDARD\\2,3"  # Image Display Format
    orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    medium: str = ""  # "" = the printer's choice
    destination: str = ""
    magnification: str = ""
    border_density: str = "BLACK"
    empty_image_density: str = "BLACK"
    min_density: int = 0
    max_density: int = 0
    trim: Literal["YES", "NO"] = "NO"
    presentation_lut: Literal["", "IDENTITY", "LIN OD"] = ""
    # boxes: one image box per image; page: the box lays out the film and sends it as
    # one STANDARD\1,1 image (seeds 002 and 004)
    send_as: Literal["boxes", "page"] = "boxes"
    true_size: bool = False  # print at the size Pixel Spacing gives, not fitted
    copies: int = 1
    priority: Literal["HIGH", "MED", "LOW"] = "MED"
    driver_keys: dict[str, Any] = other_keys()  # the keys of plugins' drivers

    def printer_options(self, name: str = "printer") -> Any:
        """The options of the printer's driver, from this section."""
        options_type = PRINTERS.options_type(self.driver)
        return load_part(options_type, self, name, chosen=f'driver = "{self.driver}"')

    def validate(self, name: str) -> None:
        if not self.name:
            raise ConfigError(f"[{name}] needs a name")
        check_choice(f"{name}.driver", self.driver, PRINTERS.names())
        check_other_keys(self, name, PRINTERS.config_keys())
        self.printer_options(name)
        if not 1 <= self.copies <= 99:
            raise ConfigError(f"[{name}] copies = {self.copies}: 1 to 99")
