"""IHE PDI web content: an ``IHE_PDI`` folder with a page of JPEG previews, one per
series, for the patient who opens the disc on a computer without a DICOM viewer.

Each preview is the middle image of its series, rendered as the box renders anything
it shows: modality rescale, then the image's own window (or its full range), to 8 bits
with numpy; Pillow writes the JPEG. The page has no scripts and no outside assets.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

log = logging.getLogger("dicombox.media")

FOLDER = "IHE_PDI"
SIZE = 256  # the longer side of a preview, in pixels


def render(ds: Dataset) -> np.ndarray:
    """The first frame of ``ds`` as 8-bit grey (or RGB) values a screen can show."""
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if pixels.ndim == 3:  # colour: shown as it is
        return np.clip(pixels, 0, 255).astype(np.uint8)
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1)
    values += float(ds.get("RescaleIntercept", 0) or 0)
    center, width = _window(ds, values)
    low = center - width / 2
    grey = np.clip((values - low) / max(width, 1e-6), 0.0, 1.0) * 255
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        grey = 255 - grey  # MONOCHROME1 shows low values white
    return grey.astype(np.uint8)


def _window(ds: Dataset, values: np.ndarray) -> tuple[float, float]:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center not in (None, "") and width not in (None, ""):
        return _first(center), _first(width)
    low, high = float(values.min()), float(values.max())
    return (low + high) / 2, high - low


def _first(value: object) -> float:
    """A window value, which may be multi-valued (several windows): the first."""
    if isinstance(value, MultiValue | list | tuple):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]


def write_previews(folder: Path, files: list[Path]) -> int:
    """Write ``IHE_PDI/INDEX.HTM`` and a JPEG per series of ``files`` (the instances on
    the medium); returns how many previews were made. An image that cannot be rendered
    is skipped and logged: the previews are a courtesy, the DICOM files are the record."""
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:  # not an image the reader takes: no preview for it
            continue
        if "Rows" in ds:
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    web = folder / FOLDER
    web.mkdir(exist_ok=True)
    entries: list[tuple[str, str]] = []
    for number, members in enumerate(series.values(), start=1):
        members.sort(key=lambda m: int(m[1].get("InstanceNumber", 0) or 0))
        path, header = members[len(members) // 2]
        name = f"S{number:07d}.JPG"
        try:
            image = Image.fromarray(render(dcmread(path)))
            image.thumbnail((SIZE, SIZE))
            image.save(web / name, "JPEG", quality=85)
        except Exception as exc:
            log.warning("no preview for series %s: %s", number, exc)
            continue
        label = f"{header.get('Modality', '')} {header.get('SeriesDescription', '') or ''}".strip()
        entries.append((name, f"Series {header.get('SeriesNumber', number)}: {label}"))
    (web / "INDEX.HTM").write_text(_page(entries), encoding="ascii", errors="xmlcharrefreplace")
    return len(entries)


def _page(entries: list[tuple[str, str]]) -> str:
    figures = "\n".join(
        f'<figure><img src="{name}" alt="{html.escape(caption)}" />'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for name, caption in entries
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
        "<title>Image previews</title>\n</head>\n<body>\n<h1>Image previews</h1>\n"
        "<p>Small previews, not for diagnosis. The images themselves are DICOM files: "
        'see <a href="../INDEX.HTM">the disc\'s index</a>.</p>\n'
        f"{figures}\n</body>\n</html>\n"
    )
