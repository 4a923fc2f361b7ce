"""The box's printers: the configured ``[[printer]]`` descriptors with their templates,
the device behind each, and each one's state in DICOM's terms."""

from __future__ import annotations

import time

from dicombox.core.box import Box
from dicombox.hal.printer import PRINTERS, Printer, PrinterError
from dicombox.hal.registry import DriverContext
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film_printer import FilmPrinter
from dicombox.plugins.print.settings import (
    PrinterSection,
    PrinterTemplateSection,
    PrintSection,
)

# With no [[printer]] configured the box still prints: to PDF files under the data folder.
BUILT_IN = PrinterSection(name="pdf", driver="file")


class UnknownPrinter(ValueError):
    pass


def _listed(value: object) -> list:
    """A plugin section written once ([x]) or as an array ([[x]]), as a list."""
    if isinstance(value, list):
        return value
    return [value] if value is not None and getattr(value, "name", "") else []


def print_settings(box: Box) -> PrintSection:
    return box.section("print")


def configured_printers(box: Box) -> list[PrinterSection]:
    return _listed(box.config.extra.get("printer")) or [BUILT_IN]


def find_printer(box: Box, name: str = "") -> PrinterSection:
    """The printer called ``name``; "" = the default one."""
    printers = configured_printers(box)
    name = name or print_settings(box).default_printer
    if not name:
        return printers[0]
    for printer in printers:
        if printer.name == name:
            return printer
    known = ", ".join(p.name for p in printers)
    raise UnknownPrinter(f"no printer {name!r} (known: {known})")


def template_of(box: Box, printer: PrinterSection) -> PrinterTemplateSection | None:
    if not printer.template:
        return None
    for template in _listed(box.config.extra.get("printer_template")):
        if template.name == printer.template:
            return template
    raise UnknownPrinter(f"printer {printer.name}: no [[printer_template]] {printer.template!r}")


def capabilities(box: Box, printer: PrinterSection) -> v.Capabilities:
    """What the printer's model can do, from its template (anything, without one)."""
    return capabilities_of(template_of(box, printer))


def capabilities_of(template: PrinterTemplateSection | None) -> v.Capabilities:
    if template is None:
        return v.GENERIC
    return v.Capabilities.of(
        name=template.name,
        film_sizes=template.film_sizes,
        medium_types=template.medium_types,
        magnifications=template.magnifications,
        max_columns=template.max_columns,
        max_rows=template.max_rows,
        min_density=template.min_density,
        max_density=template.max_density,
        color=template.color,
        bits=template.bits,
        dpi=template.dpi,
    )


def printer_device(box: Box, printer: PrinterSection) -> Printer:
    """The device behind ``printer``: its driver's, with the options of its section."""
    context = DriverContext(data_dir=box.config.data_dir, name=printer.name, host=box)
    return PRINTERS.open(printer.driver, printer.printer_options(), context)


def takes_films(box: Box, printer: PrinterSection) -> bool:
    """Does ``printer`` take films (a DICOM film printer) rather than rendered pages?"""
    return isinstance(printer_device(box, printer), FilmPrinter)


_known: dict[str, tuple[float, v.PrinterCondition]] = {}  # printer name -> (when asked, answer)


def printer_state(box: Box, printer: PrinterSection, max_age_s: float = 0.0) -> v.PrinterCondition:
    """Ask the printer how it is (a DICOM printer over the network: N-GET Printer), or
    take its answer of less than ``max_age_s`` ago: a film printer that takes one
    association at a time is not asked again for every modality's N-GET."""
    now = time.monotonic()
    asked = _known.get(printer.name)
    if asked is not None and now - asked[0] < max_age_s:
        return asked[1]
    state = _ask(box, printer)
    _known[printer.name] = (now, state)
    return state


def _ask(box: Box, printer: PrinterSection) -> v.PrinterCondition:
    try:
        state = printer_device(box, printer).status()
    except (PrinterError, OSError):
        return v.describe_printer("FAILURE", "PRINTER DOWN")
    return v.describe_printer(state.status, state.info)
