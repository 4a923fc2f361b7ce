"""One film as the print plugin passes it around: what a film box asks for, and the
pixels of each occupied image position.

The print SCU makes a ``Film`` from stored instances and sends it to a film printer;
the print SCP makes one from what a modality sends and hands it to the printer HAL.
``save_film``/``load_film`` keep a film in a spool folder between the two halves of a
job (the association that received it, the job that prints it), pixels as ``.npy``
files beside a JSON description, so nothing is decoded twice and a restart loses
nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FILM_FILE = "film.json"


@dataclass
class ImageBox:
    """One occupied position of a film box: its pixels as the printer gets them.

    ``pixels`` is (rows, columns) unsigned grey, with ``bits`` of 8 or 12 significant
    bits where the highest value prints lightest, as PS3.3 C.13.5 defines P-values; or
    (rows, columns, 3) uint8 RGB for colour."""

    position: int  # Image Box Position, 1-based
    pixels: np.ndarray
    bits: int = 8
    polarity: str = "NORMAL"  # NORMAL | REVERSE
    magnification: str = ""  # REPLICATE | BILINEAR | CUBIC | NONE; "" = the film box's
    requested_size_mm: float = 0.0  # width of the printed image; 0 = fit the box

    @property
    def color(self) -> bool:
        return self.pixels.ndim == 3


@dataclass
class Film:
    """One film box with its session's settings and the image boxes that are filled."""

    display_format: str = "STANDARD\\1,1"  # Image Display Format (2010,0010)
    film_size: str = "8INX10IN"
    orientation: str = "PORTRAIT"
    magnification: str = "BILINEAR"
    smoothing: str = ""
    border_density: str = "BLACK"
    empty_image_density: str = "BLACK"
    min_density: int = 0  # 0 = the printer's
    max_density: int = 0
    trim: str = "NO"
    presentation_lut_shape: str = ""  # "" none referenced | IDENTITY | LIN OD | INVERSE
    copies: int = 1
    priority: str = "MED"
    medium: str = ""  # PAPER, CLEAR FILM, BLUE FILM …; "" = the printer's
    destination: str = ""  # MAGAZINE, PROCESSOR …
    label: str = ""  # Film Session Label
    annotations: list[str] = field(default_factory=list)  # lines printed on the film
    images: list[ImageBox] = field(default_factory=list)
    group: str = ""  # whose films these are: one film session (or file) per group

    @property
    def color(self) -> bool:
        return any(box.color for box in self.images)


def save_film(film: Film, folder: Path) -> None:
    """Write ``film`` into ``folder`` (made if needed): film.json and one .npy each."""
    folder.mkdir(parents=True, exist_ok=True)
    description: dict[str, Any] = dataclasses.asdict(film)
    boxes = []
    for box, data in zip(film.images, description["images"], strict=True):
        name = f"image-{box.position}.npy"
        np.save(folder / name, box.pixels, allow_pickle=False)
        boxes.append({**data, "pixels": name})
    description["images"] = boxes
    (folder / FILM_FILE).write_text(json.dumps(description, indent=1))


def load_film(folder: Path) -> Film:
    """The film ``save_film`` wrote into ``folder``."""
    description = json.loads((folder / FILM_FILE).read_text())
    images = [
        ImageBox(**{**box, "pixels": np.load(folder / box["pixels"], allow_pickle=False)})
        for box in description.pop("images")
    ]
    return Film(**description, images=images)
