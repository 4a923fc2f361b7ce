"""The [print], [[printer]] and [[printer_template]] configuration sections.

A printer template says what a printer model can do; a printer descriptor (a
``[[printer]]``) says where one printer is and how it prints by default, as seed 000's
Printer Template and Printer Descriptor files do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from dicombox.core.config import ConfigError, check_choice, check_other_keys, load_part, other_keys
from dicombox.hal.printer import PRINTERS
from dicombox.plugins.print import film_printer  # noqa: F401  (registers the "dicom" driver)


@dataclass(frozen=True)
class PrintSection:
    """The print plugin: `dicombox print`, print routes and the print server.

    A printer descriptor (`[[printer]]`) says where a printer is and how it prints by
    default; a printer template (`[[printer_template]]`) says what a model can do, as
    seed 000's Printer Descriptor and Printer Template files do. With no `[[printer]]`,
    the box prints to PDF files (a built-in printer called `pdf`)."""

    default_printer: str = ""
    """The printer of `dicombox print` and of the print server; empty: the first
    `[[printer]]`, else the built-in `pdf`."""
    warning: Literal["continue", "fail"] = "continue"
    """A film printer whose Printer Status is WARNING: go on and report it, or `"fail"`
    (seed 000 treats WARNING as FAILURE)."""
    retries: int = 5
    """A job that fails for a reason that may pass (printer offline, out of film, busy) is
    tried again this often (the seeds' default); the printer's queue waits for it."""
    retry_delay_s: float = 180.0
    """How far apart those tries are."""
    scp: bool = True
    """The print server: modalities print to the box (Basic Grayscale and Color Print
    Management)."""
    scp_ae_title: str = ""
    """A called AE title of its own for the print server; empty: the box's."""
    scp_printer: str = ""
    """Where films printed to the box go; empty: `default_printer`."""
    idle_s: float = 60.0
    """A route with `print` prints a study once no image has come for it this long."""
    annotate: bool = True
    """Films the box lays out for paper or files carry the patient, study date and
    institution (films printed to the box: the sender and time)."""
    dpi: int = 150
    """Resolution of films rendered for paper and files (50 to 600)."""

    def validate(self, name: str) -> None:
        if self.retries < 0 or self.retry_delay_s < 0:
            raise ConfigError(f"[{name}] retries and retry_delay_s must be >= 0")
        if not 50 <= self.dpi <= 600:
            raise ConfigError(f"[{name}] dpi = {self.dpi}: between 50 and 600")


@dataclass(frozen=True)
class PrinterTemplateSection:
    """What a printer model supports. Empty lists: anything the standard defines."""

    repeated: ClassVar[bool] = True  # written [[printer_template]], one table per model

    name: str = ""
    """How a `[[printer]]`'s `template` names it (required)."""
    film_sizes: list[str] = field(default_factory=list)
    """Film Size IDs the model takes; empty: every defined term."""
    medium_types: list[str] = field(default_factory=list)
    """Medium Types the model takes; empty: every defined term."""
    magnifications: list[str] = field(default_factory=list)
    """Magnification Types the model takes; empty: every defined term."""
    max_columns: int = 10
    """The largest layout: columns of STANDARD\\C,R (and the longest ROW/COL)."""
    max_rows: int = 10
    """The largest layout: rows."""
    min_density: int = 0
    """The least density the printer can make, in hundredths of optical density."""
    max_density: int = 400
    """The greatest density the printer can make, in hundredths of optical density."""
    color: bool = False
    """Colour films."""
    dpi: int = 300
    """Resolution of a page image (`send_as = "page"`)."""
    bits: int = 12
    """Grey depth it takes: 8 or 12."""

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

    repeated: ClassVar[bool] = True  # written [[printer]], one table per printer

    name: str = ""
    """How rules and commands name it (required)."""
    driver: str = "file"
    """`dicom`: a DICOM film printer, the `[[remote]]` in `remote`; `cups`: a paper printer
    through `lp` (`queue`); `file`: PDF or PNG files (`format`) in `folder`. In a file
    printer's folder, a file `OFFLINE`, `NO_PAPER` or `LOW_PAPER` makes it report that
    state. Or the name of a driver a plugin adds, which reads its own keys here."""
    remote: str = ""
    """For `dicom` (and then required): the `[[remote]]` that is the film printer."""
    queue: str = ""
    """For `cups`: the `lp` destination; empty: CUPS's default."""
    folder: str = ""
    """For `file`: where films go; empty: `<data_dir>/print/<name>`."""
    format: Literal["pdf", "png"] = "pdf"
    """For `file`: the files written."""
    template: str = ""
    """A `[[printer_template]]` name; empty: anything the standard allows."""
    film_size: str = "14INX17IN"
    """Film Size ID."""
    layout: str = "STANDARD\\2,3"
    """Image Display Format."""
    orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    """Film Orientation."""
    medium: str = ""
    """Film session Medium Type; empty: the printer's choice."""
    destination: str = ""
    """Film session Film Destination; empty: the printer's."""
    magnification: str = ""
    """Film box Magnification Type; empty: the printer's."""
    border_density: str = "BLACK"
    """Film box Border Density."""
    empty_image_density: str = "BLACK"
    """Film box Empty Image Density."""
    min_density: int = 0
    """Film box Min Density; `0`: the printer's."""
    max_density: int = 0
    """Film box Max Density; `0`: the printer's."""
    trim: Literal["YES", "NO"] = "NO"
    """Film box Trim."""
    presentation_lut: Literal["", "IDENTITY", "LIN OD"] = ""
    """`IDENTITY` or `LIN OD`: an N-CREATE Presentation LUT referenced by each film box."""
    send_as: Literal["boxes", "page"] = "boxes"
    """`boxes`: one image box per image, 12-bit; `page`: the box lays out the whole film and
    sends it as one STANDARD\\1,1 image at the template's resolution (seeds 002/004)."""
    true_size: bool = False
    """Print each image at the size its Pixel Spacing gives (Requested Image Size), not
    fitted to its box."""
    copies: int = 1
    """Film session Number of Copies (1–99)."""
    priority: Literal["HIGH", "MED", "LOW"] = "MED"
    """Film session Print Priority."""
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
