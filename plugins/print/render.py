"""Film rendering: stored instances to print values, and a film box to the sheet it makes.

``image_box_from_dataset`` turns one frame of a stored instance into the P-values an
image box carries (PS3.3 C.13.5: the higher the value, the lighter the print): modality
LUT, VOI (a window or a VOI LUT), MONOCHROME1 inversion and the presentation LUT shape,
scaled to 8 or 12 bits; colour becomes 8-bit RGB.

``render_film`` lays a ``Film`` out as the printer would: the Image Display Format cut
into cells, each image box scaled into its cell, border and empty cells at their
densities, the annotation lines in a strip of their own along the top. The result is
8-bit (0 = black, dense film; 255 = white) so the same pixels serve a preview, a paper
printer and ``page_image_box`` for film printers that take one page image per sheet.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import unicodedata
from fractions import Fraction

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
    pixel_array,
)
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombox.plugins.print.film import Film, ImageBox
from dicombox.plugins.print.vocabulary import parse_display_format

Cell = tuple[float, float, float, float]  # x, y, width, height as fractions of the area
PixelBox = tuple[int, int, int, int]  # left, top, right, bottom in sheet pixels

MM_PER_INCH = 25.4
PAGE_FORMAT = "STANDARD\\1,1"  # the display format to send a page_image_box with
OUTPUT_BITS = (8, 12)
DEFAULT_MAX_DENSITY = 300  # hundredths of OD: a usual film Dmax when the film box names none
MAX_BOXES_PER_LINE = 100  # a display format asking for more is a mistake, not a film
GAP_FRACTION = 0.01  # the margin and the gap between cells, of the sheet's short side
TEXT_INCHES = 0.1  # annotation text height (about 7 pt), so it reads alike at any dpi
MAX_STRIP_FRACTION = 0.25  # annotations never take more of the sheet than this

# Portrait width × height in millimetres of the Film Size ID defined terms (PS3.3 C.13.5).
FILM_SIZES_MM: dict[str, tuple[float, float]] = {
    "8INX10IN": (203.2, 254.0),
    "8_5INX11IN": (215.9, 279.4),
    "10INX12IN": (254.0, 304.8),
    "10INX14IN": (254.0, 355.6),
    "11INX14IN": (279.4, 355.6),
    "11INX17IN": (279.4, 431.8),
    "14INX14IN": (355.6, 355.6),
    "14INX17IN": (355.6, 431.8),
    "24CMX24CM": (240.0, 240.0),
    "24CMX30CM": (240.0, 300.0),
    "A4": (210.0, 297.0),
    "A3": (297.0, 420.0),
}

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
YBR_FULL = ("YBR_FULL", "YBR_FULL_422")
# JPEG 2000 decoders undo the ICT/RCT themselves, so these arrive as RGB.
RGB_LIKE = ("RGB", "YBR_ICT", "YBR_RCT")

RESAMPLING = {
    "REPLICATE": Image.Resampling.NEAREST,
    "BILINEAR": Image.Resampling.BILINEAR,
    "CUBIC": Image.Resampling.BICUBIC,
}


# --- stored instance → image box -----------------------------------------------------


def image_box_from_dataset(
    ds: Dataset,
    position: int,
    *,
    frame: int = 0,
    bits: int = 8,
    window: tuple[float, float] | None = None,
    presentation_lut: str = "IDENTITY",
    true_size: bool = False,
) -> ImageBox:
    """One frame of ``ds`` as the image box for ``position``.

    Grey: modality LUT, then ``window`` (center, width) or the instance's first window,
    else its VOI LUT, else the full range of its values; MONOCHROME1 is inverted so a
    higher value is always lighter, and ``presentation_lut`` INVERSE flips once more.
    The values fill ``bits`` (8 → uint8 0..255, 12 → uint16 0..4095). Colour becomes
    uint8 RGB whatever ``bits`` says. With ``true_size`` the box asks to be printed at
    the width the instance's pixel spacing gives it."""
    if bits not in OUTPUT_BITS:
        raise ValueError(f"image boxes carry 8 or 12 bits, not {bits}")
    if window is not None and window[1] <= 0:
        raise ValueError(f"window width must be positive, not {window[1]}")
    decodable = _decodable(ds)
    stored = _frame_pixels(decodable, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    size_mm = _true_width_mm(ds, frame) if true_size else 0.0
    if photometric not in MONOCHROME:
        rgb = _to_rgb(stored, decodable, photometric)
        return ImageBox(position=position, pixels=rgb, bits=8, requested_size_mm=size_mm)
    lightness = _voi_fraction(_modality_values(stored, decodable, frame), decodable, frame, window)
    if photometric == "MONOCHROME1":
        lightness = 1.0 - lightness  # MONOCHROME1: the lowest value is white
    if presentation_lut.strip().upper() == "INVERSE":
        lightness = 1.0 - lightness
    return ImageBox(
        position=position,
        pixels=_quantise(lightness, bits),
        bits=bits,
        requested_size_mm=size_mm,
    )


def _decodable(ds: Dataset) -> Dataset:
    """``ds``, or a shallow copy that says its transfer syntax: pydicom decodes only a
    dataset with one, and a dataset received over the network has no file meta."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return ds
    implicit, little = ds.original_encoding
    if little is False:
        syntax = ExplicitVRBigEndian
    elif implicit:
        syntax = ImplicitVRLittleEndian
    else:  # built in memory: native little-endian values
        syntax = ExplicitVRLittleEndian
    shallow = copy.copy(ds)
    shallow.file_meta = FileMetaDataset()
    shallow.file_meta.TransferSyntaxUID = syntax
    return shallow


def _frame_pixels(ds: Dataset, frame: int) -> np.ndarray:
    """The stored values of one frame, in the stored colour space."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < frames:
        raise ValueError(f"frame {frame} is not in this instance ({frames} frame(s))")
    # raw: colour stays in its stored space, converted below where it is named
    return pixel_array(ds, index=frame, raw=True)


def _frame_value(ds: Dataset, frame: int, group: str, keyword: str) -> object:
    """``keyword`` for ``frame``: from an enhanced instance's per-frame or shared
    functional group ``group`` when there, else from the top level."""
    for sequence, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(sequence)
        if items and len(items) > index:
            inner = items[index].get(group)
            if inner and inner[0].get(keyword) not in (None, ""):
                return inner[0].get(keyword)
    return ds.get(keyword)


def _first(value: object) -> float | None:
    """A numeric attribute that may hold several values (several windows): the first."""
    if value in (None, ""):
        return None
    if isinstance(value, MultiValue | list | tuple):
        return float(value[0]) if len(value) else None
    return float(value)  # type: ignore[arg-type]


def _modality_values(stored: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Stored values in modality units (HU for CT), as float."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(stored, ds).astype(np.float64)
    group = "PixelValueTransformationSequence"
    slope = _first(_frame_value(ds, frame, group, "RescaleSlope"))
    intercept = _first(_frame_value(ds, frame, group, "RescaleIntercept"))
    values = stored.astype(np.float64) * (1.0 if slope is None else slope)
    return values + (0.0 if intercept is None else intercept)


def _voi_fraction(
    values: np.ndarray, ds: Dataset, frame: int, window: tuple[float, float] | None
) -> np.ndarray:
    """Modality values as 0..1 lightness through the VOI the caller or instance picks."""
    if window is not None:
        return _apply_window(values, window[0], window[1], "LINEAR")
    group = "FrameVOILUTSequence"
    center = _first(_frame_value(ds, frame, group, "WindowCenter"))
    width = _first(_frame_value(ds, frame, group, "WindowWidth"))
    if center is not None and width is not None:
        function = str(_frame_value(ds, frame, group, "VOILUTFunction") or "LINEAR")
        return _apply_window(values, center, max(width, 1.0), function.strip().upper())
    if ds.get("VOILUTSequence"):
        return _apply_voi_lut(values, ds)
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a flat image has no range to spread: the bottom of it
        return np.zeros(values.shape)
    return (values - low) / (high - low)


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2: the window's VOI LUT function, output as 0..1."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:  # LINEAR with width 1 is a threshold at center - 0.5
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _apply_voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI LUT of ``ds``, output as 0..1 of its declared entry depth."""
    depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    # the LUT is indexed by integers; modality values from a rescale are whole anyway
    mapped = apply_voi(np.rint(values).astype(np.int64), ds)
    return mapped.astype(np.float64) / (2**depth - 1)


def _quantise(lightness: np.ndarray, bits: int) -> np.ndarray:
    """0..1 lightness as unsigned ``bits``-bit values."""
    top = 2**bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.rint(np.clip(lightness, 0.0, 1.0) * top).astype(dtype)


def _to_rgb(stored: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """A colour frame as uint8 RGB."""
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        if rgb.dtype != np.uint8:  # 16-bit palette entries
            rgb = np.rint(rgb.astype(np.float64) / 257.0).astype(np.uint8)
        return rgb
    if photometric not in YBR_FULL + RGB_LIKE:
        raise ValueError(f"cannot print Photometric Interpretation {photometric!r}")
    rgb = stored
    if rgb.dtype != np.uint8:
        top = 2 ** int(ds.get("BitsStored", 16) or 16) - 1
        rgb = np.rint(np.clip(rgb, 0, top) * (255.0 / top)).astype(np.uint8)
    if photometric in YBR_FULL:
        rgb = convert_color_space(rgb, photometric, "RGB")
    return rgb


def _true_width_mm(ds: Dataset, frame: int) -> float:
    """Columns × column spacing: the image's physical width, 0 when not known."""
    spacing = _frame_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    if not spacing:
        spacing = ds.get("ImagerPixelSpacing")
    if not spacing or not isinstance(spacing, MultiValue | list | tuple) or len(spacing) < 2:
        return 0.0
    return int(ds.get("Columns", 0) or 0) * float(spacing[1])  # (row, column) spacing


# --- film geometry --------------------------------------------------------------------


def display_format_cells(display_format: str) -> list[Cell]:
    """The image positions of ``display_format`` as (x, y, w, h) fractions of the
    printable area, in Image Box Position order: left to right, top to bottom.

    STANDARD\\C,R is C columns by R rows; ROW\\n1,n2,… rows of equal height with n1,
    n2, … equal columns; COL\\n1,n2,… columns of equal width with n1, n2, … equal rows.
    Positions are numbered by their top edge, then their left edge, so in COL\\2,1 the
    right column's single box (top edge 0) is position 2 and the lower left one is 3."""
    parsed = parse_display_format(display_format.strip().upper())
    kind, counts = parsed.kind, list(parsed.counts)
    if max(counts) > MAX_BOXES_PER_LINE or len(counts) > MAX_BOXES_PER_LINE:
        raise ValueError(f"{display_format!r}: more than {MAX_BOXES_PER_LINE} boxes in a line")
    cells: list[tuple[Fraction, Fraction, Fraction, Fraction]]
    if kind == "STANDARD":
        columns, rows = counts
        cells = [
            (Fraction(c, columns), Fraction(r, rows), Fraction(1, columns), Fraction(1, rows))
            for r in range(rows)
            for c in range(columns)
        ]
    elif kind == "ROW":
        rows = len(counts)
        cells = [
            (Fraction(c, n), Fraction(r, rows), Fraction(1, n), Fraction(1, rows))
            for r, n in enumerate(counts)
            for c in range(n)
        ]
    elif kind == "COL":
        columns = len(counts)
        cells = [
            (Fraction(c, columns), Fraction(r, n), Fraction(1, columns), Fraction(1, n))
            for c, n in enumerate(counts)
            for r in range(n)
        ]
    else:
        raise ValueError(
            f"unsupported Image Display Format {display_format!r}: "
            "expected STANDARD\\C,R, ROW\\n1,n2,… or COL\\n1,n2,…"
        )
    # exact fractions, so boxes on one line sort together however they were cut
    cells.sort(key=lambda cell: (cell[1], cell[0]))
    return [(float(x), float(y), float(w), float(h)) for x, y, w, h in cells]


def film_size_mm(film_size: str) -> tuple[float, float]:
    """(width, height) in millimetres of a Film Size ID, portrait."""
    try:
        return FILM_SIZES_MM[film_size.strip().upper()]
    except KeyError:
        known = ", ".join(FILM_SIZES_MM)
        raise ValueError(f"unknown film size {film_size!r} (known: {known})") from None


def film_pixels(film: Film, dpi: int) -> tuple[int, int]:
    """(width, height) of ``film``'s sheet in pixels at ``dpi``, as it lies."""
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, not {dpi}")
    width_mm, height_mm = film_size_mm(film.film_size)
    width = max(1, round(width_mm / MM_PER_INCH * dpi))
    height = max(1, round(height_mm / MM_PER_INCH * dpi))
    if film.orientation.strip().upper() == "LANDSCAPE":
        return height, width
    return width, height


def _gap(width: int, height: int) -> int:
    """Margin and gap between cells in pixels; at least 2 so half of it is a pixel."""
    return max(2, round(GAP_FRACTION * min(width, height)))


def _cell_boxes(display_format: str, width: int, height: int, top: int) -> list[PixelBox]:
    """The cells of ``display_format`` in sheet pixels, below a strip of ``top`` rows,
    inside a margin and apart from each other by the gap."""
    gap = _gap(width, height)
    half = gap // 2
    x0, y0 = gap, top + gap
    area_w, area_h = max(width - 2 * gap, 0), max(height - top - 2 * gap, 0)
    boxes = []
    for fx, fy, fw, fh in display_format_cells(display_format):
        left = x0 + round(fx * area_w) + half
        right = max(left, x0 + round((fx + fw) * area_w) - half)
        upper = y0 + round(fy * area_h) + half
        lower = max(upper, y0 + round((fy + fh) * area_h) - half)
        boxes.append((left, upper, right, lower))
    return boxes


# --- densities and text ---------------------------------------------------------------


def _density_grey(density: str, film: Film) -> int:
    """A Border/Empty Image Density as the 8-bit grey it prints as (255 = white).

    BLACK and WHITE are the ends; a number is hundredths of optical density, placed
    linearly between the film's max density (black) and min density (white)."""
    text = (density or "BLACK").strip().upper()
    if text == "BLACK":
        return 0
    if text == "WHITE":
        return 255
    try:
        hundredths = float(text)
    except ValueError:
        raise ValueError(
            f"density {density!r} is neither BLACK, WHITE nor hundredths of optical density"
        ) from None
    low = film.min_density if film.min_density > 0 else 0
    high = film.max_density if film.max_density > 0 else DEFAULT_MAX_DENSITY
    fraction = (high - hundredths) / max(high - low, 1)
    return round(255 * min(max(fraction, 0.0), 1.0))


def _font(dpi: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at annotation size; its small bitmap one without FreeType."""
    try:
        return ImageFont.load_default(size=max(10, round(TEXT_INCHES * dpi)))
    except (ImportError, OSError):
        return ImageFont.load_default()


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    bottom = int(font.getbbox("Ag")[3])
    return bottom + max(2, bottom // 4)


def _strip_lines(film: Film, width: int, height: int, dpi: int) -> tuple[int, list[str]]:
    """Height in rows of the annotation strip and the lines that fit in it (0, [] when
    the film has none). The strip is capped so annotations cannot crowd out images."""
    lines = [line for line in film.annotations if line.strip()]
    if not lines:
        return 0, []
    gap = _gap(width, height)
    step = _line_height(_font(dpi))
    fitting = max(1, (int(height * MAX_STRIP_FRACTION) - gap) // step)
    lines = lines[:fitting]
    return gap + step * len(lines), lines


def _printable(line: str) -> str:
    """``line`` in the ASCII that Pillow's built-in fonts have glyphs for: accents are
    dropped (Général → General) rather than printed as empty boxes, and characters
    with no ASCII form become '?'."""
    decomposed = unicodedata.normalize("NFKD", line)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return bare.encode("ascii", "replace").decode("ascii")


def _draw_annotations(
    sheet: np.ndarray, lines: list[str], strip: int, background: int, dpi: int
) -> None:
    """Write ``lines`` into the top ``strip`` rows of ``sheet``. They are drawn on an
    image of just the strip, so text can never spill onto the cells below it."""
    height, width = sheet.shape[:2]
    gap = _gap(width, height)
    font = _font(dpi)
    step = _line_height(font)
    ink = 255 if background < 128 else 0  # contrast with the border it sits on
    canvas = Image.new("L", (width, strip), background)
    draw = ImageDraw.Draw(canvas)
    for number, line in enumerate(lines):
        draw.text((gap, gap + number * step), _printable(line), fill=ink, font=font)
    text = np.asarray(canvas)
    sheet[:strip] = text[..., None] if sheet.ndim == 3 else text


# --- image boxes onto the sheet -------------------------------------------------------


def _eight_bit(box: ImageBox) -> np.ndarray:
    """An image box's pixels as uint8, 12-bit grey reduced to 8."""
    pixels = box.pixels
    if box.color or (box.bits <= 8 and pixels.dtype == np.uint8):
        return np.clip(pixels, 0, 255).astype(np.uint8)
    top = 2**box.bits - 1
    return np.rint(np.clip(pixels, 0, top) * (255.0 / top)).astype(np.uint8)


def _crop_centre(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The middle of ``image`` at most ``width`` × ``height``."""
    rows, cols = image.shape[:2]
    top = max(0, (rows - height) // 2)
    left = max(0, (cols - width) // 2)
    return image[top : top + min(rows, height), left : left + min(cols, width)]


def _fit(image: np.ndarray, box: ImageBox, film: Film, cell: PixelBox, dpi: int) -> np.ndarray:
    """``image`` scaled for its cell per requested size and magnification, cropped to it."""
    cell_w, cell_h = cell[2] - cell[0], cell[3] - cell[1]
    rows, cols = image.shape[:2]
    mode = (box.magnification or film.magnification or "BILINEAR").strip().upper()
    if box.requested_size_mm > 0:
        factor = max(1, round(box.requested_size_mm / MM_PER_INCH * dpi)) / cols
    elif mode == "NONE":
        return _crop_centre(image, cell_w, cell_h)
    else:
        factor = min(cell_w / cols, cell_h / rows)
    # only the part that will show is scaled, so a huge requested size costs nothing
    image = _crop_centre(image, math.ceil(cell_w / factor) + 1, math.ceil(cell_h / factor) + 1)
    rows, cols = image.shape[:2]
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    if size != (cols, rows):
        resample = RESAMPLING.get(mode, Image.Resampling.BILINEAR)
        image = np.asarray(Image.fromarray(image).resize(size, resample))
    return _crop_centre(image, cell_w, cell_h)


def _box_image(box: ImageBox, film: Film, cell: PixelBox, dpi: int) -> np.ndarray:
    """What ``box`` puts on the sheet: 8-bit, polarity and presentation LUT applied,
    scaled and cropped to ``cell``."""
    image = _eight_bit(box)
    if box.polarity.strip().upper() == "REVERSE":
        image = 255 - image
    # a presentation LUT is a grayscale notion (PS3.3 C.11.6): colour boxes keep theirs
    if not box.color and film.presentation_lut_shape.strip().upper() == "INVERSE":
        image = 255 - image
    return _fit(image, box, film, cell, dpi)


def _paste_centred(sheet: np.ndarray, image: np.ndarray, cell: PixelBox) -> None:
    """Put ``image`` (no larger than ``cell``) in the middle of ``cell``."""
    left, top, right, bottom = cell
    rows, cols = image.shape[:2]
    x = left + (right - left - cols) // 2
    y = top + (bottom - top - rows) // 2
    if sheet.ndim == 3 and image.ndim == 2:
        image = image[..., None]  # grey on a colour film: the same value in R, G and B
    sheet[y : y + rows, x : x + cols] = image


def _boxes_by_position(film: Film, positions: int) -> dict[int, ImageBox]:
    """The film's image boxes by position, refusing one the display format lacks."""
    boxes: dict[int, ImageBox] = {}
    for box in film.images:
        if not 1 <= box.position <= positions:
            raise ValueError(
                f"image box position {box.position} is not in {film.display_format!r} "
                f"({positions} position(s))"
            )
        boxes[box.position] = box
    return boxes


def render_film(film: Film, dpi: int = 150) -> np.ndarray:
    """The whole sheet of ``film`` at ``dpi`` as uint8: (H, W) grey, or (H, W, 3) RGB
    for a colour film; 0 is black (dense film), 255 white.

    Border and gaps print at the border density, empty cells at the empty image density;
    each image box is scaled into its cell keeping its aspect ratio (or printed at its
    requested size) and centred; annotations go in a strip along the top."""
    width, height = film_pixels(film, dpi)
    border = _density_grey(film.border_density, film)
    empty = _density_grey(film.empty_image_density, film)
    shape = (height, width, 3) if film.color else (height, width)
    sheet = np.full(shape, border, dtype=np.uint8)
    strip, lines = _strip_lines(film, width, height, dpi)
    cells = _cell_boxes(film.display_format, width, height, strip)
    boxes = _boxes_by_position(film, len(cells))
    for position, cell in enumerate(cells, start=1):
        box = boxes.get(position)
        if box is None:
            left, top, right, bottom = cell
            sheet[top:bottom, left:right] = empty
        else:
            _paste_centred(sheet, _box_image(box, film, cell, dpi), cell)
    if lines:
        _draw_annotations(sheet, lines, strip, border, dpi)
    return sheet


def page_image_box(film: Film, dpi: int, bits: int = 8) -> ImageBox:
    """The rendered sheet as the one image box of a PAGE_FORMAT film box, for printers
    that are sent a page image: grey scaled to ``bits`` (uint8 or uint16), or RGB.

    Polarity and the presentation LUT are already in the pixels: send the box with
    NORMAL polarity and an IDENTITY presentation LUT."""
    if bits not in OUTPUT_BITS:
        raise ValueError(f"image boxes carry 8 or 12 bits, not {bits}")
    sheet = render_film(film, dpi)
    if sheet.ndim == 3:
        return ImageBox(position=1, pixels=sheet, bits=8)
    pixels = sheet if bits == 8 else _quantise(sheet / 255.0, bits)
    return ImageBox(position=1, pixels=pixels, bits=bits)


# --- making a film's boxes alike, and labelling one ------------------------------------


def as_color(box: ImageBox) -> ImageBox:
    """``box`` as RGB (a grey one replicated into three channels, 8 bits)."""
    if box.color:
        return box
    grey = _eight_bit(box)
    return dataclasses.replace(box, pixels=np.repeat(grey[..., None], 3, axis=2), bits=8)


def as_grey(box: ImageBox, bits: int) -> ImageBox:
    """``box`` as grey of ``bits`` (colour by its luminance, ITU-R BT.601)."""
    if not box.color:
        return box
    rgb = box.pixels.astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    top = 2**bits - 1
    values = np.rint(luminance * (top / 255.0)).astype(np.uint16 if bits > 8 else np.uint8)
    return dataclasses.replace(box, pixels=values, bits=bits)


def label_pixels(box: ImageBox, lines: list[str]) -> np.ndarray:
    """``box``'s pixels with ``lines`` written in its top left corner, light text on a
    dark band, as modalities burn patient data into the images they film."""
    pixels = box.pixels.copy()
    font = ImageFont.load_default()
    step = _line_height(font)
    texts = [_printable(line) for line in lines if line.strip()]
    if not texts:
        return pixels
    width = min(pixels.shape[1], max(int(font.getlength(t)) for t in texts) + 4)
    height = min(pixels.shape[0], step * len(texts) + 2)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for number, text in enumerate(texts):
        draw.text((2, 1 + number * step), text, fill=255, font=font)
    ink = np.asarray(canvas) > 127
    top = 255 if box.color or box.bits <= 8 else 2**box.bits - 1
    band = pixels[:height, :width]
    band[...] = 0
    band[ink] = top
    return pixels
