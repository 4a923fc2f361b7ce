"""Print SCU pieces that need no printer: N-EVENT-REPORTs answered as pynetdicom expects,
the checks before connecting, and films made of grey and colour images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicombox.plugins.print import render
from dicombox.plugins.print import vocabulary as v
from dicombox.plugins.print.film import Film, ImageBox
from dicombox.plugins.print.scu import PrintError, PrintReport, _event_handler, check_films


def grey(value: int = 2000) -> ImageBox:
    return ImageBox(1, np.full((32, 32), value, np.uint16), bits=12)


def test_a_printer_event_is_answered_with_a_status_and_kept() -> None:
    report = PrintReport()
    info = Dataset()
    info.PrinterStatusInfo = "SUPPLY LOW"
    event = SimpleNamespace(event_information=info, request=SimpleNamespace(EventTypeID=2))
    assert _event_handler(report)(event) == (0x0000, None)  # pynetdicom unpacks a pair
    assert report.events == ["event 2: SUPPLY LOW"]


def test_a_density_beyond_the_template_is_sent_not_refused() -> None:
    template = v.Capabilities.of(max_density=300)
    check_films([Film(max_density=320, images=[grey()])], template)  # the printer's B605


def test_what_the_template_cannot_print_is_refused_before_connecting() -> None:
    template = v.Capabilities.of(film_sizes=["8INX10IN"], bits=8, color=False)
    with pytest.raises(PrintError) as refused:
        check_films([Film(film_size="14INX17IN", images=[grey()])], template)
    assert refused.value.permanent and "14INX17IN" in str(refused.value)


def test_grey_and_colour_boxes_are_made_alike() -> None:
    colour = ImageBox(2, np.zeros((32, 32, 3), np.uint8) + np.array([255, 0, 0], np.uint8))
    assert render.as_color(grey(4095)).pixels.shape == (32, 32, 3)
    assert render.as_color(grey(4095)).pixels.max() == 255
    as_grey = render.as_grey(colour, 12)
    assert as_grey.pixels.ndim == 2 and as_grey.bits == 12
    assert as_grey.pixels.max() == round(0.299 * 4095)  # pure red's luminance


def test_a_label_is_burnt_into_the_top_left_corner_only() -> None:
    box = ImageBox(1, np.full((256, 256), 2000, np.uint16), bits=12)
    labelled = render.label_pixels(box, ["DOE JANE (P77)", "2026-11-23 CT"])
    corner = labelled[:30, :100]
    assert corner.max() == 4095 and (corner == 0).any()  # letters on a dark band
    assert (labelled[60:, :] == 2000).all() and (labelled[:, 150:] == 2000).all()
    assert (box.pixels == 2000).all()  # the box itself is left as it was
