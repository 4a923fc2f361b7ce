"""Film rendering: print values from stored instances, film geometry and whole sheets."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicombox.plugins.print.film import Film, ImageBox
from dicombox.plugins.print.render import (
    display_format_cells,
    film_pixels,
    film_size_mm,
    image_box_from_dataset,
    page_image_box,
    render_film,
)

DPI = 50  # small sheets keep the tests quick; geometry scales the same at any dpi


def image_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements) -> Dataset:
    """A native little-endian image instance holding ``pixels`` ((frames,) rows, cols(, 3))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    frames = pixels.shape[0] if pixels.ndim == (4 if colour else 3) else 1
    shape = pixels.shape[1:] if frames > 1 else pixels.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = 12 if pixels.dtype == np.uint16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def ct_dataset() -> Dataset:
    """64×64 CT-like: stored 0..4095 along the columns, rescale −1024, window 40/400."""
    row = np.linspace(0, 4095, 64).round().astype(np.uint16)
    pixels = np.tile(row, (64, 1))
    pixels[0, :3] = [1024 + 40, 1024 + 40 - 300, 1024 + 40 + 300]  # center, below, above
    return image_dataset(
        pixels,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=40,
        WindowWidth=400,
        PixelSpacing=[0.7, 0.5],
    )


# --- image_box_from_dataset ---------------------------------------------------------


def test_window_maps_center_to_mid_grey_and_outside_to_black_and_white():
    box = image_box_from_dataset(ct_dataset(), 3)
    assert box.position == 3 and box.bits == 8 and box.pixels.dtype == np.uint8
    assert box.pixels.shape == (64, 64)
    center, below, above = (int(v) for v in box.pixels[0, :3])
    assert abs(center - 128) <= 1
    assert below == 0 and above == 255
    assert box.pixels[1, 0] == 0 and box.pixels[1, -1] == 255  # −1024 HU and +3071 HU


def test_explicit_window_overrides_the_instance_window():
    box = image_box_from_dataset(ct_dataset(), 1, window=(40 + 300, 200))
    assert box.pixels[0, 0] == 0  # 40 HU is far below a window centred at 340
    assert abs(int(box.pixels[0, 2]) - 128) <= 1


def test_full_range_when_no_window():
    pixels = np.tile(np.array([100, 150, 200], dtype=np.uint16), (4, 1))
    box = image_box_from_dataset(image_dataset(pixels), 1)
    assert box.pixels[0].tolist() == [0, 128, 255]


def test_voi_lut_sequence_when_no_window():
    pixels = np.tile(np.array([0, 1, 2, 3], dtype=np.uint16), (2, 1))
    ds = image_dataset(pixels)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.LUTData = [255, 0, 255, 0]
    ds.VOILUTSequence = [item]
    box = image_box_from_dataset(ds, 1)
    assert box.pixels[0].tolist() == [255, 0, 255, 0]


def test_monochrome1_is_inverted_so_higher_is_lighter():
    pixels = np.tile(np.array([0, 4095], dtype=np.uint16), (2, 1))
    mono2 = image_box_from_dataset(image_dataset(pixels), 1)
    mono1 = image_box_from_dataset(image_dataset(pixels, "MONOCHROME1"), 1)
    assert mono2.pixels[0].tolist() == [0, 255]
    assert mono1.pixels[0].tolist() == [255, 0]


def test_inverse_presentation_lut_flips():
    box = image_box_from_dataset(ct_dataset(), 1, presentation_lut="INVERSE")
    assert box.pixels[0, 1] == 255 and box.pixels[0, 2] == 0


def test_twelve_bit_output_spans_0_to_4095():
    box = image_box_from_dataset(ct_dataset(), 1, bits=12)
    assert box.bits == 12 and box.pixels.dtype == np.uint16
    assert int(box.pixels.min()) == 0 and int(box.pixels.max()) == 4095
    assert abs(int(box.pixels[0, 0]) - 2048) <= 12


def test_bad_bits_are_refused():
    with pytest.raises(ValueError):
        image_box_from_dataset(ct_dataset(), 1, bits=10)


def test_true_size_from_pixel_spacing_then_imager_pixel_spacing():
    assert image_box_from_dataset(ct_dataset(), 1).requested_size_mm == 0
    assert image_box_from_dataset(ct_dataset(), 1, true_size=True).requested_size_mm == 32.0
    ds = ct_dataset()
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.25]
    assert image_box_from_dataset(ds, 1, true_size=True).requested_size_mm == 16.0
    del ds.ImagerPixelSpacing
    assert image_box_from_dataset(ds, 1, true_size=True).requested_size_mm == 0


def test_rgb_stays_rgb_uint8():
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[..., 2] = 50
    box = image_box_from_dataset(image_dataset(pixels, "RGB"), 1, bits=12)
    assert box.color and box.bits == 8 and box.pixels.dtype == np.uint8
    assert box.pixels.shape == (8, 8, 3)
    assert box.pixels[4, 4].tolist() == [200, 0, 50]


def test_ybr_full_is_converted_to_rgb():
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[...] = [76, 85, 255]  # pure red in YBR_FULL (ITU-T T.871)
    box = image_box_from_dataset(image_dataset(pixels, "YBR_FULL"), 1)
    red, green, blue = (int(v) for v in box.pixels[0, 0])
    assert red >= 250 and green <= 5 and blue <= 5


def test_multiframe_gives_the_asked_frame():
    pixels = np.stack([np.full((6, 6), value, dtype=np.uint8) for value in (10, 20, 30)])
    pixels[:, 0, 0] = 0  # a range to spread in each frame
    ds = image_dataset(pixels, WindowCenter=128, WindowWidth=256)
    frames = [image_box_from_dataset(ds, 1, frame=f).pixels[3, 3] for f in range(3)]
    assert frames[0] < frames[1] < frames[2]
    assert image_box_from_dataset(ds, 1, frame=2).pixels.shape == (6, 6)
    with pytest.raises(ValueError):
        image_box_from_dataset(ds, 1, frame=3)


def test_dataset_without_file_meta_still_decodes():
    ds = ct_dataset()
    del ds.file_meta
    assert image_box_from_dataset(ds, 1).pixels[0, 1] == 0


# --- geometry -------------------------------------------------------------------------


def flatten(cells: list[tuple[float, ...]]) -> list[float]:
    return [value for cell in cells for value in cell]


def test_standard_format_cells_in_position_order():
    cells = display_format_cells("STANDARD\\2,3")
    assert len(cells) == 6
    expected = [(c / 2, r / 3, 1 / 2, 1 / 3) for r in range(3) for c in range(2)]
    assert flatten(cells) == pytest.approx(flatten(expected))


def test_row_format_gives_each_row_its_columns():
    cells = display_format_cells("ROW\\1,2")
    expected = [(0, 0, 1, 0.5), (0, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]
    assert flatten(cells) == pytest.approx(flatten(expected))


def test_col_format_gives_each_column_its_rows():
    cells = display_format_cells("COL\\2,1")
    assert len(cells) == 3
    # numbered left to right, top to bottom: the right column's box starts at the top
    expected = [(0, 0, 0.5, 0.5), (0.5, 0, 0.5, 1), (0, 0.5, 0.5, 0.5)]
    assert flatten(cells) == pytest.approx(flatten(expected))


@pytest.mark.parametrize(
    "bad", ["", "STANDARD", "STANDARD\\2", "STANDARD\\2,0", "STANDARD\\a,b", "ROW\\", "SLIDE"]
)
def test_bad_display_formats_raise(bad):
    with pytest.raises(ValueError):
        display_format_cells(bad)


def test_film_sizes_and_pixels():
    assert film_size_mm("14INX17IN") == (355.6, 431.8)
    assert film_size_mm("a4") == (210.0, 297.0)
    with pytest.raises(ValueError):
        film_size_mm("35MMX35MM")
    assert film_pixels(Film(film_size="14INX17IN"), 100) == (1400, 1700)
    assert film_pixels(Film(film_size="14INX17IN", orientation="LANDSCAPE"), 100) == (1700, 1400)


# --- render_film ----------------------------------------------------------------------


def flat(value: int, shape: tuple[int, ...] = (40, 40), bits: int = 8) -> np.ndarray:
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.full(shape, value, dtype=dtype)


def quarter_centres(sheet: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) centres of the cells of STANDARD\\2,2 on an unannotated sheet."""
    height, width = sheet.shape[:2]
    return [(height // 4, width // 4), (height // 4, 3 * width // 4)] + [
        (3 * height // 4, width // 4),
        (3 * height // 4, 3 * width // 4),
    ]


def two_by_two(**fields) -> Film:
    """STANDARD\\2,2, black border, white empty cells, images in positions 1 and 4."""
    settings = {"border_density": "BLACK", "empty_image_density": "WHITE", **fields}
    return Film(
        display_format="STANDARD\\2,2",
        images=[ImageBox(1, flat(255)), ImageBox(4, flat(90))],
        **settings,
    )


def test_render_fills_cells_empty_cells_and_border():
    sheet = render_film(two_by_two(), DPI)
    assert sheet.dtype == np.uint8 and sheet.shape == (500, 400)
    first, second, third, fourth = (int(sheet[r, c]) for r, c in quarter_centres(sheet))
    assert first == 255 and fourth == 90
    assert second == 255 and third == 255  # empty image density WHITE
    assert sheet[0, 0] == 0 and sheet[-1, -1] == 0  # margin
    assert sheet[125, 200] == 0 and sheet[250, 100] == 0  # gaps between cells
    # the empty cell is filled edge to edge, not just in the middle
    assert (sheet[20:230, 210:380] == 255).all()


def test_density_numbers_map_between_max_and_min_density():
    film = two_by_two()
    film.border_density, film.empty_image_density = "60", "300"
    sheet = render_film(film, DPI)
    assert sheet[0, 0] == 204  # 0.60 OD of 0..3.00: 80 % of white
    assert sheet[quarter_centres(sheet)[1]] == 0  # 3.00 OD is the default max: black
    film.min_density, film.max_density = 20, 220
    sheet = render_film(film, DPI)
    assert sheet[0, 0] == round(255 * 160 / 200)
    assert sheet[quarter_centres(sheet)[1]] == 0  # beyond max density: as dark as it gets


def test_bad_density_and_position_raise():
    with pytest.raises(ValueError):
        render_film(two_by_two(border_density="GREY"), DPI)
    film = two_by_two()
    film.images.append(ImageBox(5, flat(1)))
    with pytest.raises(ValueError):
        render_film(film, DPI)


def test_reverse_polarity_and_inverse_presentation_lut_invert():
    film = two_by_two()
    film.images[0].polarity = "REVERSE"
    sheet = render_film(film, DPI)
    assert sheet[quarter_centres(sheet)[0]] == 0
    inverse = render_film(two_by_two(presentation_lut_shape="INVERSE"), DPI)
    assert inverse[quarter_centres(inverse)[0]] == 0
    assert inverse[quarter_centres(inverse)[3]] == 255 - 90
    assert inverse[quarter_centres(inverse)[1]] == 255  # empty cells keep their density


def test_twelve_bit_boxes_are_reduced_to_eight():
    film = Film(images=[ImageBox(1, flat(4095, bits=12), bits=12)])
    sheet = render_film(film, DPI)
    assert sheet[250, 200] == 255


def test_images_keep_their_aspect_ratio_and_are_centred():
    wide = np.full((10, 40), 200, dtype=np.uint8)
    sheet = render_film(Film(images=[ImageBox(1, wide)], magnification="REPLICATE"), DPI)
    columns = np.flatnonzero(sheet[250] == 200)
    rows = np.flatnonzero(sheet[:, 200] == 200)
    assert len(rows) == round(len(columns) / 4)
    assert abs((rows[0] + rows[-1]) / 2 - 250) <= 1
    assert abs((columns[0] + columns[-1]) / 2 - 200) <= 1


def test_magnification_none_and_requested_size():
    small = np.full((20, 20), 200, dtype=np.uint8)
    none = render_film(Film(images=[ImageBox(1, small)], magnification="NONE"), DPI)
    assert (none == 200).sum() == 400
    sized = ImageBox(1, small, requested_size_mm=25.4, magnification="REPLICATE")
    sheet = render_film(Film(images=[sized]), 100)
    assert (sheet == 200).sum() == 100 * 100  # one inch at 100 dpi
    huge = ImageBox(1, small, requested_size_mm=2000.0)
    sheet = render_film(Film(images=[huge], display_format="STANDARD\\2,1"), DPI)
    cell = sheet[:, : sheet.shape[1] // 2]
    assert cell[250, 100] == 200 and cell[0, 0] == 0  # cropped to its cell


def test_replicate_keeps_hard_edges():
    checker = np.kron(np.array([[0, 255], [255, 0]], dtype=np.uint8), np.ones((2, 2), np.uint8))
    sheet = render_film(Film(images=[ImageBox(1, checker, magnification="REPLICATE")]), DPI)
    inside = sheet[200:300, 150:250]
    assert set(np.unique(inside).tolist()) <= {0, 255}
    smooth = render_film(Film(images=[ImageBox(1, checker, magnification="BILINEAR")]), DPI)
    assert len(np.unique(smooth[200:300, 150:250])) > 2


def test_annotations_in_their_own_strip_above_the_images():
    grey = [ImageBox(p, flat(128)) for p in (1, 2, 3, 4)]
    plain = render_film(Film(display_format="STANDARD\\2,2", images=grey), DPI)
    annotated_film = Film(
        display_format="STANDARD\\2,2",
        images=grey,
        annotations=["DOE^JANE  1234567", "2024-05-01  CT CHEST", "General Hospital"],
    )
    sheet = render_film(annotated_film, DPI)
    assert sheet.shape == plain.shape

    def image_top(image: np.ndarray) -> int:
        return int(np.flatnonzero((image == 128).sum(axis=1) > image.shape[1] // 4)[0])

    text = sheet > 200  # white text on the black border; the images are 128
    text_rows = np.flatnonzero(text.any(axis=1))
    assert len(text_rows) > 0
    top = image_top(sheet)
    assert text_rows[-1] < top
    assert not text[top:].any()  # no text on or between the images
    assert top > image_top(plain)  # the images made room for the strip


def test_accents_print_as_plain_letters_not_missing_glyphs():
    accented = render_film(Film(annotations=["Hôpital Général"]), DPI)
    plain = render_film(Film(annotations=["Hopital General"]), DPI)
    assert np.array_equal(accented, plain)


def test_dark_text_on_a_light_border():
    film = Film(border_density="WHITE", annotations=["DOE^JANE"])
    sheet = render_film(film, DPI)
    assert (sheet[:40] == 0).any()


def test_colour_film_is_rgb_with_grey_boxes_replicated():
    red = np.zeros((20, 20, 3), dtype=np.uint8)
    red[..., 0] = 255
    film = Film(
        display_format="STANDARD\\2,1",
        images=[ImageBox(1, red), ImageBox(2, flat(77, (20, 20)))],
        presentation_lut_shape="INVERSE",
    )
    sheet = render_film(film, DPI)
    assert sheet.shape == (500, 400, 3)
    assert sheet[250, 100].tolist() == [255, 0, 0]  # colour is not inverted
    assert sheet[250, 300].tolist() == [255 - 77] * 3
    assert sheet[0, 0].tolist() == [0, 0, 0]


# --- page_image_box -------------------------------------------------------------------


def test_page_image_box_is_the_sheet_at_position_one():
    film = two_by_two(orientation="LANDSCAPE")
    page = page_image_box(film, DPI)
    assert page.position == 1 and page.bits == 8 and page.pixels.shape == (400, 500)
    assert np.array_equal(page.pixels, render_film(film, DPI))
    deep = page_image_box(film, DPI, bits=12)
    assert deep.bits == 12 and deep.pixels.dtype == np.uint16
    assert int(deep.pixels.max()) == 4095 and int(deep.pixels.min()) == 0
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    colour = page_image_box(Film(images=[ImageBox(1, red)]), DPI, bits=12)
    assert colour.color and colour.bits == 8 and colour.pixels.shape == (500, 400, 3)
