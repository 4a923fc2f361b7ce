"""The print vocabulary: display formats, the request checkers, status and printer
conditions (seed 000 §5.1/§8, seed 001 §5.10, seed 002 §5.10, seed 004 B5)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import decode, encode

from dicombox.plugins.print import vocabulary as v

# --------------------------------------------------------------------------------------
# Image Display Format
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "columns", "rows"),
    [
        ("STANDARD\\2,3", 6, 2, 3),
        ("STANDARD\\1,1", 1, 1, 1),
        ("ROW\\2,3", 5, 3, 2),
        ("ROW\\3,4,4,4,4", 19, 4, 5),  # seed 001
        ("COL\\1,2", 3, 2, 2),
        ("STANDARD\\5,6 ", 30, 5, 6),  # padded to even length
    ],
)
def test_display_formats(text: str, count: int, columns: int, rows: int) -> None:
    layout = v.parse_display_format(text)
    assert v.positions(text) == layout.positions == count
    assert (layout.columns, layout.rows) == (columns, rows)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "STANDARD",
        "STANDARD\\2",
        "STANDARD\\2,3,4",
        "STANDARD\\0,3",
        "STANDARD\\-1,3",
        "STANDARD\\2, 3",
        "standard\\2,3",
        "STANDARD/2,3",
        "ROW\\",
        "ROW\\2,,3",
        "COL\\a",
        "GRID\\2,2",
        "SLIDE",
        "SUPERSLIDE",
        "CUSTOM\\1",
    ],
)
def test_bad_display_formats(text: str) -> None:
    with pytest.raises(ValueError, match="Image Display Format"):
        v.positions(text)


def test_printer_defined_formats_need_a_count() -> None:
    custom = {"SLIDE": 20, "CUSTOM\\2": 4}
    assert v.positions("SLIDE", custom) == 20
    assert v.positions("CUSTOM\\2", custom) == 4
    with pytest.raises(ValueError, match="template"):
        v.positions("CUSTOM\\3", custom)


# --------------------------------------------------------------------------------------
# Film Session
# --------------------------------------------------------------------------------------


def film_session(**values: object) -> Dataset:
    ds = Dataset()
    ds.NumberOfCopies = 2
    ds.PrintPriority = "MED"
    ds.MediumType = "BLUE FILM"
    ds.FilmDestination = "PROCESSOR"
    ds.FilmSessionLabel = "17"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def keywords(problems: list[v.Problem]) -> list[str]:
    return [p.keyword for p in problems]


def test_film_session_accepts_valid_values() -> None:
    assert v.check_film_session(film_session()) == []
    assert v.check_film_session(Dataset()) == []  # every attribute is optional
    assert v.check_film_session(film_session(FilmDestination="BIN_2")) == []
    assert v.check_film_session(film_session(MediumType="CURRENT")) == []  # seed 000


@pytest.mark.parametrize("copies", [0, 100, -1])
def test_film_session_copies_out_of_range(copies: int) -> None:
    problems = v.check_film_session(film_session(NumberOfCopies=copies))
    assert keywords(problems) == ["NumberOfCopies"]
    assert problems[0].tag == 0x20000010
    assert problems[0].value == copies
    assert problems[0].status == 0x0106
    assert "1..99" in problems[0].message


@pytest.mark.filterwarnings("ignore:The value length")
@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PrintPriority", "URGENT"),
        ("MediumType", "GLOSSY PAPER"),
        ("FilmDestination", "BIN_0"),
        ("FilmDestination", "TRAY"),
        ("FilmSessionLabel", "x" * 65),
    ],
)
def test_film_session_bad_values(keyword: str, value: str) -> None:
    assert keywords(v.check_film_session(film_session(**{keyword: value}))) == [keyword]


def test_film_session_against_a_template() -> None:
    caps = v.Capabilities(
        name="dryview", medium_types=["BLUE FILM"], film_destinations=["MAGAZINE"]
    )
    problems = v.check_film_session(film_session(MediumType="PAPER"), caps)
    assert keywords(problems) == ["MediumType", "FilmDestination"]
    assert "dryview" in problems[0].message


# --------------------------------------------------------------------------------------
# Film Box
# --------------------------------------------------------------------------------------


def film_box(**values: object) -> Dataset:
    ds = Dataset()
    ds.ImageDisplayFormat = "STANDARD\\2,3"
    ref = Dataset()
    ref.ReferencedSOPClassUID = v.BASIC_FILM_SESSION
    ref.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedFilmSessionSequence = Sequence([ref])
    ds.FilmOrientation = "PORTRAIT"
    ds.FilmSizeID = "14INX17IN"
    ds.MagnificationType = "CUBIC"
    ds.SmoothingType = "MEDIUM"
    ds.BorderDensity = "BLACK"
    ds.EmptyImageDensity = "WHITE"
    ds.MinDensity = 20
    ds.MaxDensity = 300
    ds.Trim = "NO"
    ds.ConfigurationInformation = "CS000"
    ds.Illumination = 2000
    ds.ReflectedAmbientLight = 10
    ds.RequestedResolutionID = "STANDARD"
    for keyword, value in values.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    return ds


def test_film_box_accepts_valid_values() -> None:
    assert v.check_film_box(film_box()) == []
    assert v.check_film_box(film_box(BorderDensity="150", FilmSizeID="8_5INX11IN")) == []
    minimal = Dataset()
    minimal.ImageDisplayFormat = "ROW\\2,3,3,3"
    minimal.ReferencedFilmSessionSequence = film_box().ReferencedFilmSessionSequence
    assert v.check_film_box(minimal) == []


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("FilmSizeID", "15INX17IN"),
        ("FilmOrientation", "SIDEWAYS"),
        ("MagnificationType", "LANCZOS"),
        ("BorderDensity", "GREY"),
        ("EmptyImageDensity", "1200"),
        ("MaxDensity", 1001),
        ("Trim", "MAYBE"),
        ("Illumination", 0),
        ("RequestedResolutionID", "ULTRA"),
        ("ImageDisplayFormat", "STANDARD\\2"),
    ],
)
def test_film_box_bad_values(keyword: str, value: object) -> None:
    problems = v.check_film_box(film_box(**{keyword: value}))
    assert keywords(problems) == [keyword]


def test_film_box_film_size_message() -> None:
    (problem,) = v.check_film_box(film_box(FilmSizeID="15INX17IN"))
    assert problem.tag == 0x20100050
    assert problem.value == "15INX17IN"
    assert "Film Size ID (2010,0050) '15INX17IN'" in problem.message
    assert "14INX17IN" in problem.message


def test_film_box_min_density_above_max() -> None:
    (problem,) = v.check_film_box(film_box(MinDensity=500, MaxDensity=300))
    assert problem.keyword == "MinDensity"
    assert "300" in problem.message


def test_film_box_needs_layout_and_session() -> None:
    problems = v.check_film_box(
        film_box(ImageDisplayFormat=None, ReferencedFilmSessionSequence=None)
    )
    assert keywords(problems) == ["ImageDisplayFormat", "ReferencedFilmSessionSequence"]
    assert {p.status for p in problems} == {0x0120}
    # N-SET of a film box: nothing is required, the layout cannot change.
    update = Dataset()
    update.MagnificationType = "REPLICATE"
    assert v.check_film_box(update, n_create=False) == []
    update.ImageDisplayFormat = "STANDARD\\1,1"
    assert keywords(v.check_film_box(update, n_create=False)) == ["ImageDisplayFormat"]


def test_film_box_wrong_session_reference() -> None:
    ds = film_box()
    ds.ReferencedFilmSessionSequence[0].ReferencedSOPClassUID = v.BASIC_FILM_BOX
    assert keywords(v.check_film_box(ds)) == ["ReferencedFilmSessionSequence"]


def test_smoothing_only_with_cubic() -> None:
    problems = v.check_film_box(film_box(MagnificationType="BILINEAR"))
    assert keywords(problems) == ["SmoothingType"]
    assert v.check_film_box(film_box(MagnificationType=None)) == []


def test_template_refuses_what_the_printer_lacks() -> None:
    caps = v.Capabilities(
        name="drypix",
        film_sizes=["8INX10IN", "14INX17IN"],
        magnifications=["REPLICATE", "BILINEAR"],
        max_columns=4,
        max_rows=5,
        min_density=10,
        max_density=250,
    )
    problems = v.check_film_box(film_box(FilmSizeID="11INX14IN"), caps)
    assert "FilmSizeID" in keywords(problems)
    size = next(p for p in problems if p.keyword == "FilmSizeID")
    assert "not supported by printer 'drypix'" in size.message
    assert not size.is_warning
    problems = v.check_film_box(film_box(ImageDisplayFormat="STANDARD\\5,5"), caps)
    assert "ImageDisplayFormat" in keywords(problems)
    assert "MagnificationType" in keywords(problems)  # CUBIC
    densities = [p for p in problems if p.keyword in ("MinDensity", "MaxDensity")]
    assert [p.keyword for p in densities] == ["MaxDensity"]  # 300 > 250; min 20 is fine
    assert densities[0].status == 0xB605 and densities[0].is_warning
    fits = film_box(ImageDisplayFormat="ROW\\4,4", MagnificationType="BILINEAR",
                    SmoothingType=None, MinDensity=None, MaxDensity=None)  # fmt: skip
    assert v.check_film_box(fits, caps) == []


def test_template_with_explicit_formats() -> None:
    caps = v.Capabilities(display_formats=["STANDARD\\1,1", "SLIDE"], custom_formats={"SLIDE": 20})
    assert v.check_film_box(film_box(ImageDisplayFormat="SLIDE"), caps) == []
    problems = v.check_film_box(film_box(ImageDisplayFormat="STANDARD\\2,2"), caps)
    assert keywords(problems) == ["ImageDisplayFormat"]


def test_generic_template_stops_at_ten_by_ten() -> None:
    assert v.check_film_box(film_box(ImageDisplayFormat="STANDARD\\10,10")) == []
    problems = v.check_film_box(film_box(ImageDisplayFormat="STANDARD\\11,2"))
    assert keywords(problems) == ["ImageDisplayFormat"]


def test_bad_templates_are_refused() -> None:
    with pytest.raises(ValueError):
        v.Capabilities(min_density=300, max_density=300)
    with pytest.raises(ValueError):
        v.Capabilities(max_columns=0)
    with pytest.raises(ValueError):
        v.Capabilities(display_formats=["CUSTOM\\9"])
    with pytest.raises(ValueError):
        v.Capabilities(bits=10)


def test_template_from_configuration_lists() -> None:
    caps = v.Capabilities.of("laser", film_sizes=[], medium_types=["PAPER"], max_rows=4)
    assert caps.film_sizes == frozenset(v.FILM_SIZES)
    assert caps.medium_types == frozenset({"PAPER"})
    assert caps.max_rows == 4
    assert hash(caps) == hash(v.Capabilities.of("laser", medium_types=("PAPER",), max_rows=4))


# --------------------------------------------------------------------------------------
# Image Box
# --------------------------------------------------------------------------------------


def grayscale_box(position: int = 1, rows: int = 4, columns: int = 5, bits: int = 8) -> Dataset:
    image = Dataset()
    image.SamplesPerPixel = 1
    image.PhotometricInterpretation = "MONOCHROME2"
    image.Rows, image.Columns = rows, columns
    image.PixelAspectRatio = [1, 1]
    image.BitsAllocated = 16 if bits > 8 else 8
    image.BitsStored = bits
    image.HighBit = bits - 1
    image.PixelRepresentation = 0
    image.PixelData = bytes(rows * columns * (image.BitsAllocated // 8))
    ds = Dataset()
    ds.ImageBoxPosition = position
    ds.BasicGrayscaleImageSequence = Sequence([image])
    return ds


def color_box(position: int = 1, rows: int = 4, columns: int = 5) -> Dataset:
    image = Dataset()
    image.SamplesPerPixel = 3
    image.PhotometricInterpretation = "RGB"
    image.PlanarConfiguration = 1
    image.Rows, image.Columns = rows, columns
    image.BitsAllocated = image.BitsStored = 8
    image.HighBit = 7
    image.PixelRepresentation = 0
    image.PixelData = bytes(rows * columns * 3)
    ds = Dataset()
    ds.ImageBoxPosition = position
    ds.BasicColorImageSequence = Sequence([image])
    return ds


def test_image_boxes_accept_valid_images() -> None:
    assert v.check_image_box(grayscale_box(), False, 6) == []
    assert v.check_image_box(grayscale_box(6, bits=12), False, 6) == []  # seeds 002/004
    assert v.check_image_box(color_box(), True, 1) == []
    odd = grayscale_box(rows=3, columns=3)  # 9 bytes of pixels, padded to 10
    odd.BasicGrayscaleImageSequence[0].PixelData += b"\0"
    assert v.check_image_box(odd, False, 1) == []
    boxed = grayscale_box()
    boxed.Polarity = "REVERSE"
    boxed.MagnificationType = "REPLICATE"
    boxed.RequestedImageSize = "120.5"
    boxed.RequestedDecimateCropBehavior = "CROP"
    assert v.check_image_box(boxed, False, 1) == []


def test_empty_sequence_erases_the_image_box() -> None:
    ds = Dataset()
    ds.ImageBoxPosition = 2
    ds.BasicGrayscaleImageSequence = Sequence([])
    assert v.check_image_box(ds, False, 4) == []


def test_image_box_position_beyond_the_format() -> None:
    (problem,) = v.check_image_box(grayscale_box(7), False, v.positions("STANDARD\\2,3"))
    assert problem.keyword == "ImageBoxPosition"
    assert problem.tag == 0x20200010
    assert "1..6" in problem.message
    assert keywords(v.check_image_box(grayscale_box(0), False, 6)) == ["ImageBoxPosition"]
    missing = grayscale_box()
    del missing.ImageBoxPosition
    assert [p.status for p in v.check_image_box(missing, False, 6)] == [0x0120]


def test_grayscale_box_with_rgb() -> None:
    ds = grayscale_box()
    ds.BasicGrayscaleImageSequence[0].PhotometricInterpretation = "RGB"
    assert keywords(v.check_image_box(ds, False, 1)) == ["PhotometricInterpretation"]
    # A colour image sent to a grayscale image box: the wrong sequence, and none right.
    problems = v.check_image_box(color_box(), False, 1)
    assert keywords(problems) == ["BasicColorImageSequence", "BasicGrayscaleImageSequence"]


def test_color_box_needs_planar_configuration_1() -> None:
    ds = color_box()
    ds.BasicColorImageSequence[0].PlanarConfiguration = 0
    (problem,) = v.check_image_box(ds, True, 1)
    assert problem.keyword == "PlanarConfiguration"
    assert problem.value == 0
    assert "Basic Color Image Sequence > Planar Configuration" in problem.message
    assert v.check_image_box(ds, True, 1, allow_planar_0=True) == []  # seeds 002/004
    del ds.BasicColorImageSequence[0].PlanarConfiguration
    (problem,) = v.check_image_box(ds, True, 1)
    assert (problem.keyword, problem.status) == ("PlanarConfiguration", 0x0120)


def test_color_box_other_attributes() -> None:
    ds = color_box()
    ds.BasicColorImageSequence[0].SamplesPerPixel = 1  # seed 001's table
    assert "SamplesPerPixel" in keywords(v.check_image_box(ds, True, 1))
    gray = v.Capabilities(name="mono", color=False)
    assert keywords(v.check_image_box(color_box(), True, 1, capabilities=gray)) == [
        "BasicColorImageSequence"
    ]


def test_pixel_data_too_short() -> None:
    ds = grayscale_box(rows=4, columns=5)
    ds.BasicGrayscaleImageSequence[0].PixelData = bytes(19)
    (problem,) = v.check_image_box(ds, False, 1)
    assert problem.keyword == "PixelData"
    assert problem.tag == 0x7FE00010
    assert "need 20" in problem.message
    ds = color_box()
    ds.BasicColorImageSequence[0].PixelData = bytes(4 * 5)  # one sample per pixel
    assert keywords(v.check_image_box(ds, True, 1)) == ["PixelData"]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("BitsStored", 10),
        ("HighBit", 8),
        ("PixelRepresentation", 1),
        ("Rows", 0),
        ("SamplesPerPixel", 3),
    ],
)
def test_grayscale_pixel_description(keyword: str, value: int) -> None:
    ds = grayscale_box()
    setattr(ds.BasicGrayscaleImageSequence[0], keyword, value)
    assert keyword in keywords(v.check_image_box(ds, False, 1))


def test_image_box_presentation_values() -> None:
    ds = grayscale_box()
    ds.Polarity = "INVERTED"
    ds.RequestedImageSize = "0"
    ds.RequestedDecimateCropBehavior = "SHRINK"
    assert keywords(v.check_image_box(ds, False, 1)) == [
        "Polarity",
        "RequestedImageSize",
        "RequestedDecimateCropBehavior",
    ]


def test_twelve_bits_on_an_eight_bit_printer() -> None:
    caps = v.Capabilities(name="old", bits=8)
    problems = v.check_image_box(grayscale_box(bits=12), False, 1, capabilities=caps)
    assert keywords(problems) == ["BitsStored"]


def test_checks_on_what_arrives_over_the_network() -> None:
    """An SCP sees Implicit VR Little Endian with the VRs looked up again."""

    def received(ds: Dataset) -> Dataset:
        return decode(BytesIO(encode(ds, True, True)), True, True)

    for ds, color in ((grayscale_box(3), False), (color_box(), True)):
        assert v.check_image_box(received(ds), color, 6) == []
    bad = received(film_box(MinDensity=500, MaxDensity=300))
    assert keywords(v.check_film_box(bad)) == ["MinDensity"]


def test_presentation_lut() -> None:
    ds = Dataset()
    ds.PresentationLUTShape = "IDENTITY"
    assert v.check_presentation_lut(ds) == []
    ds.PresentationLUTShape = "INVERSE"  # softcopy only
    assert keywords(v.check_presentation_lut(ds)) == ["PresentationLUTShape"]
    assert keywords(v.check_presentation_lut(Dataset())) == ["PresentationLUTShape"]


# --------------------------------------------------------------------------------------
# DIMSE status
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, v.Outcome.CONTINUE),
        (0xB603, v.Outcome.WARN),
        (0xB600, v.Outcome.WARN),
        (0x0116, v.Outcome.WARN),
        (0xB6FF, v.Outcome.WARN),  # unknown warning
        (0xC603, v.Outcome.FAIL),
        (0xC616, v.Outcome.FAIL),
        (0xC602, v.Outcome.RETRY),
        (0x0213, v.Outcome.RETRY),
        (0xA700, v.Outcome.RETRY),
        (0xA7FE, v.Outcome.RETRY),
        (0x0106, v.Outcome.FAIL),
        (0x01FF, v.Outcome.FAIL),
        (0xC6FF, v.Outcome.FAIL),
        (0xFFFF, v.Outcome.FAIL),
    ],
)
def test_outcome(status: int, expected: v.Outcome) -> None:
    verdict, meaning = v.outcome(status)
    assert verdict is expected
    assert meaning


def test_outcome_messages() -> None:
    assert "empty page" in v.outcome(0xB603)[1]
    assert "image box" in v.outcome(0xC603)[1]
    assert "FFFF" in v.outcome(0xFFFF)[1]


# --------------------------------------------------------------------------------------
# Printer status
# --------------------------------------------------------------------------------------


def test_printer_normal() -> None:
    condition = v.describe_printer("NORMAL", "")
    assert condition.text == "Camera is ready"  # seed 004 Table 142
    assert condition.lcd == "Printer ready"
    assert not condition.stops_queue
    assert condition.symbol is v.Symbol.IDLE
    assert v.describe_printer("NORMAL", "NORMAL").text == condition.text


def test_printer_film_jam() -> None:
    condition = v.describe_printer("WARNING", "FILM JAM")
    assert condition.text == "Film jam."
    assert condition.lcd == "Film jam"
    assert condition.stops_queue
    assert condition.known


def test_printer_empty_magazine() -> None:
    condition = v.describe_printer("FAILURE", "EMPTY 14X17")
    assert condition.text == "14x17 film supply empty."
    assert len(condition.lcd) <= 20
    assert condition.stops_queue
    assert condition.film_size == "14INX17IN"
    assert condition.symbol is v.Symbol.STOPPED
    blue = v.describe_printer("WARNING", "EMPTY 8X10 BLUE")
    assert blue.stops_queue and blue.symbol is v.Symbol.INTERACT
    assert blue.text == "8x10 blue film supply empty."
    low = v.describe_printer("WARNING", "LOW 24X30 CLR")
    assert not low.stops_queue
    assert low.film_size == "24CMX30CM"


def test_printer_seed_004_queue_stops() -> None:
    for info in ("ELEC CONFIG ERR", "ELEC SW ERROR", "REQ MED NOT AVAI"):
        condition = v.describe_printer("WARNING", info)
        assert condition.stops_queue and condition.symbol is v.Symbol.STOPPED
        assert "Queue stopped" in condition.text
    for info in ("CALIBRATING", "PRINTER INIT", "PROC INIT", "QUEUED"):
        assert v.describe_printer("NORMAL", info).symbol is v.Symbol.IDLE


def test_printer_unknown_info() -> None:
    warning = v.describe_printer("WARNING", "TONER SMELL")
    assert warning.text == "Camera info: TONER SMELL"  # seed 004 Table 143
    assert not warning.stops_queue and not warning.known
    failure = v.describe_printer("FAILURE", "TONER SMELL")
    assert failure.text == "Camera info: TONER SMELL Queue stopped."
    assert failure.stops_queue
    bare = v.describe_printer("FAILURE", "")
    assert bare.stops_queue and bare.lcd == "Printer failure"


def test_every_status_info_fits_the_panel() -> None:
    assert len(v.PRINTER_STATUS_INFO) > 100
    for info, entry in v.PRINTER_STATUS_INFO.items():
        assert 0 < len(entry.lcd) <= 20, info
        assert entry.text, info
        if entry.symbol is v.Symbol.STOPPED:
            assert entry.stops_queue, info
    for code in ("EMPTY 10X12 PAPR", "LOW A4 TRANS", "PRINT BUFF FULL", "INSUFFIC MEMORY"):
        assert code in v.PRINTER_STATUS_INFO


def test_warning_policy() -> None:
    assert v.WARNING_POLICY == ("continue", "fail")
    assert v.printer_may_print("NORMAL", "fail")
    assert v.printer_may_print("WARNING", "continue")
    assert not v.printer_may_print("WARNING", "fail")  # seed 000
    assert not v.printer_may_print("FAILURE", "continue")
    with pytest.raises(ValueError):
        v.printer_may_print("NORMAL", "ignore")
