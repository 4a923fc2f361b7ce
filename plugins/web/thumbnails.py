"""Thumbnails of stored images, as PNG, rendered once and kept under <data_dir>/web/thumbs.

The pixels come from the ``dicombox_render_image`` hook, so a plugin that prints (or
burns previews) renders them with the very windowing it uses there: modality LUT, the
image's window or VOI LUT, MONOCHROME1 inverted. With no such plugin loaded, the same
steps are done here with pydicom's modality and VOI LUT functions.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from dicombox.core.box import Box

log = logging.getLogger("dicombox.web")
UID = re.compile(r"[0-9.]{1,64}")
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 32, 1024, 256


class NoImage(LookupError):
    """No such instance is stored, or it has no pixels to show."""


def render(box: Box, ds: Dataset, frame: int = 0) -> np.ndarray:
    """8-bit grey or RGB pixels of one frame, windowed for a screen."""
    try:
        pixels = box.hook.dicombox_render_image(box=box, dataset=ds, frame=frame)
    except Exception:  # a plugin's renderer failing must not cost the thumbnail
        log.exception("dicombox_render_image failed; rendering with pydicom")
        pixels = None
    return np.asarray(pixels if pixels is not None else render_with_pydicom(ds, frame))


def render_with_pydicom(ds: Dataset, frame: int = 0) -> np.ndarray:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = ds.pixel_array
    if frames > 1:
        pixels = pixels[frame]
    if pixels.ndim == 3:  # colour: pydicom has made it RGB
        return np.clip(pixels, 0, 255).astype(np.uint8)
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # PS3.3 C.11.2.1.2.1, linear: the window's bounds, not the image's extremes.
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    else:
        if "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
        low, high = float(values.min()), float(values.max())
    lightness = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        lightness = 1.0 - lightness  # MONOCHROME1: the lowest value is white
    return np.round(lightness * 255).astype(np.uint8)


def _first(value: object) -> float:
    """A window value, which may hold several windows: the first."""
    if isinstance(value, MultiValue | list | tuple):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]


def to_png(pixels: np.ndarray, size: int) -> bytes:
    """The image scaled so that its longer side is ``size`` pixels, as PNG."""
    image = Image.fromarray(pixels, "RGB" if pixels.ndim == 3 else "L")
    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    out = io.BytesIO()
    image.resize(target, resample).save(out, "PNG", optimize=False)
    return out.getvalue()


class Thumbnails:
    def __init__(self, box: Box) -> None:
        self.box = box
        self.folder = box.data_dir / "web" / "thumbs"

    def png(self, sop_instance_uid: str, size: int = DEFAULT_SIZE) -> bytes:
        """The thumbnail of a stored instance (its middle frame if it has several)."""
        if not UID.fullmatch(sop_instance_uid):  # it names a file below
            raise NoImage(f"{sop_instance_uid!r} is not a UID")
        size = min(max(size, MIN_SIZE), MAX_SIZE)
        rows = self.box.index.instance_rows(sop_instance_uid=sop_instance_uid, copy=0)
        if not rows:
            raise NoImage(f"no instance {sop_instance_uid} is stored")
        source = self.box.store.path(rows[0]["path"])
        cached = self.folder / f"{sop_instance_uid}-{size}.png"
        try:
            if cached.stat().st_mtime_ns >= source.stat().st_mtime_ns:
                return cached.read_bytes()
        except OSError:
            pass  # not rendered yet (or the instance is gone: found out below)
        data = self._render(source, size)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, cached)
        return data

    def _render(self, source: Path, size: int) -> bytes:
        try:
            ds = dcmread(source)
            if "PixelData" not in ds and "FloatPixelData" not in ds:
                raise NoImage(f"{ds.get('SOPInstanceUID', '')} has no pixels to show")
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            return to_png(render(self.box, ds, frames // 2), size)
        except (OSError, ValueError, AttributeError, NotImplementedError, RuntimeError) as exc:
            raise NoImage(f"cannot render {source.name}: {exc}") from None
