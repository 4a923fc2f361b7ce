"""Print end to end with real peers: the box prints studies on DCMTK's dcmprscp (a film
printer that stores what it prints), DCMTK's dcmpsprt + dcmprscu print to the box's
print SCP, which puts the film in a PDF or PNG; printers that are offline, warn, or
refuse a request; bad print requests to the box's SCP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import storescu
from tests.support.printpeer import FilmPrinterPeer
from tests.support.synthetic import ct_dataset

GRAY_META = "1.2.840.10008.5.1.1.9"
FILM_SESSION, FILM_BOX = "1.2.840.10008.5.1.1.1", "1.2.840.10008.5.1.1.2"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"


def camera_config(port: int, printer: str = "", **printer_keys: str) -> str:
    keys = "".join(f"{k} = {v}\n" for k, v in printer_keys.items())
    return (
        f'[[remote]]\nname = "camera"\nae_title = "IHEFULL"\nhost = "127.0.0.1"\nport = {port}\n'
        f'[[printer]]\nname = "film"\ndriver = "dicom"\nremote = "camera"\n{keys}'
        f"{printer}[print]\nretry_delay_s = 1\nidle_s = 1\n"
    )


def store_images(
    box: RunningBox, folder: Path, count: int, patient: str = "FILM^FRED"
) -> tuple[str, list[Path]]:
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, count + 1):
        ds = ct_dataset(study, series, n, rows=64, columns=64, patient=patient)
        path = folder / f"{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    assert storescu(box.port, files).returncode == 0
    return study, files


@pytest.fixture
def camera(tmp_path: Path):
    require("dcmprscp", "echoscu", "storescu")
    peer = FilmPrinterPeer(tmp_path / "camera").start()
    yield peer
    peer.stop()


def test_a_study_prints_on_a_film_printer_in_the_layout_asked(make_box, camera, tmp_path):
    box = make_box(camera_config(camera.port, layout='"STANDARD\\\\2,2"'))
    study, files = store_images(box, tmp_path / "study", 6)
    queued = box.cli("print", study, "--film", "11INX14IN", "--copies", "2")
    assert queued.returncode == 0, queued.stderr
    job = box.wait_job("print", "done")
    assert "2 film(s) printed on film" in job["progress"], job
    films = camera.films()
    assert len(films) == 2  # 6 images on 4-image films
    for film in films:
        box_attrs = film.FilmBoxContentSequence[0]
        assert box_attrs.ImageDisplayFormat == "STANDARD\\2,2"
        assert box_attrs.FilmSizeID == "11INX14IN"
    # The film session the printer was asked for (its N-CREATE, in dcmprscp's dump).
    assert "(2000,0010) IS [2]" in camera.output()
    images = camera.images()
    assert len(images) == 6
    # Each image went as 12-bit print values, windowed: the source's structure is kept.
    source = pydicom.dcmread(files[0]).pixel_array.astype(float)
    printed = [im for im in images if im.Rows == 64]
    assert len(printed) == 6 and {im.BitsStored for im in printed} == {12}
    below_label = slice(40, None)
    best = max(
        abs(np.corrcoef(source[below_label].ravel(), im.pixel_array[below_label].ravel())[0, 1])
        for im in printed
    )
    assert best > 0.99
    # Each film's first image carries the patient's name, burnt in at its top left: a
    # dark band with the brightest print value for the letters.
    labelled = [im for im in printed if im.pixel_array[:8, :40].max() == 4095
                and (im.pixel_array[:8, :40] == 0).mean() > 0.3]  # fmt: skip
    assert len(labelled) == 2, "one per film"


def test_a_film_laid_out_by_the_box_goes_as_one_page_image(make_box, camera, tmp_path):
    template = '[[printer_template]]\nname = "camera"\ndpi = 50\n'
    box = make_box(
        camera_config(
            camera.port,
            template,
            layout='"STANDARD\\\\2,1"',
            send_as='"page"',
            template='"camera"',
            film_size='"8INX10IN"',
        )  # fmt: skip
    )
    study, _ = store_images(box, tmp_path / "study", 2)
    assert box.cli("print", study).returncode == 0
    box.wait_job("print", "done")
    (film,) = camera.films()
    assert film.FilmBoxContentSequence[0].ImageDisplayFormat == "STANDARD\\1,1"
    (page,) = camera.images()
    assert (page.Columns, page.Rows) == (400, 500)  # 8 x 10 inches at 50 dpi


def test_an_offline_printer_keeps_the_job_until_it_is_back(make_box, tmp_path):
    require("dcmprscp", "echoscu", "storescu")
    camera = FilmPrinterPeer(tmp_path / "camera")  # its port is known, nothing listens yet
    box = make_box(camera_config(camera.port))
    study, _ = store_images(box, tmp_path / "study", 2)
    assert box.cli("print", study).returncode == 0
    job = box.wait_job("print", error="cannot be reached")
    assert job["state"] in ("queued", "running"), job  # retried, not given up
    later = box.cli("print", study)  # a second job waits behind the first
    assert later.returncode == 0
    camera.start()
    try:
        box.wait_job("print", "done", timeout=90)
        jobs = box.jobs("print")
        assert [j["state"] for j in jobs] == ["done", "done"], jobs
        assert len(camera.films()) == 2
    finally:
        camera.stop()


def test_a_printer_refusing_the_layout_fails_the_job_with_its_status(make_box, camera, tmp_path):
    box = make_box(camera_config(camera.port, layout='"STANDARD\\\\6,6"'))  # dcmprscp: 4,5 at most
    study, _ = store_images(box, tmp_path / "study", 1)
    assert box.cli("print", study).returncode == 0
    job = box.wait_job("print", "failed")
    assert "N-CREATE Film Box: 0x" in job["last_error"], job
    assert job["attempts"] == 1  # a refusal is not retried
    assert not camera.films()


def test_printer_status_failure_and_warning_from_a_print_scp(make_box, tmp_path):
    """The box prints to a second box whose paper printer is offline, then warns."""
    require("storescu")
    spool = tmp_path / "paper"
    spool.mkdir()
    (spool / "OFFLINE").touch()
    server = make_box(
        f'[[printer]]\nname = "paper"\ndriver = "file"\nfolder = "{spool}"\n', name="server"
    )
    box = make_box(
        f'[[remote]]\nname = "server"\nae_title = "DICOMBOX"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\n[[printer]]\nname = "film"\ndriver = "dicom"\nremote = "server"\n'
        '[print]\nretry_delay_s = 1\nwarning = "fail"\n'
    )
    assert "FAILURE (PRINTER OFFLINE)" in server.cli("printers").stdout
    study, _ = store_images(box, tmp_path / "study", 1)
    assert box.cli("print", study).returncode == 0
    box.wait_job("print", error="not ready")
    (spool / "OFFLINE").unlink()
    (spool / "LOW_PAPER").touch()
    box.wait_job("print", error="warns")
    (spool / "LOW_PAPER").unlink()
    box.wait_job("print", "done", timeout=90)
    server.wait_job("print", "done")
    assert len(list(spool.glob("*.pdf"))) == 1


def test_a_modality_prints_to_the_box_and_the_film_is_a_page(make_box, tmp_path):
    require("dcmpsprt", "dcmprscu")
    pages = tmp_path / "pages"
    box = make_box(
        f'[[printer]]\nname = "png"\ndriver = "file"\nformat = "png"\nfolder = "{pages}"\n'
        "[print]\nannotate = false\ndpi = 50\n"
    )
    modality = FilmPrinterPeer(tmp_path / "modality", box_port=box.port)
    image = Path(get_testdata_file("CT_small.dcm"))
    sent = modality.print_to([image, image, image], "-l", "2", "2", "--filmsize", "8INX10IN")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    job = box.wait_job("print", "done")
    (png,) = pages.glob("*.png")
    assert str(png) in job["progress"]
    page = np.asarray(Image.open(png))
    assert page.shape == (500, 400)  # 8 x 10 inches at 50 dpi, portrait
    half_h, half_w = page.shape[0] // 2, page.shape[1] // 2
    quarters = [page[:half_h, :half_w], page[:half_h, half_w:], page[half_h:, :half_w],
                page[half_h:, half_w:]]  # fmt: skip
    assert all(q.std() > 10 for q in quarters[:3]), "three images, one per cell"
    assert quarters[3].std() < 1, "the fourth cell is empty"


def test_one_film_never_shows_two_patients(make_box, tmp_path):
    require("storescu")
    pages = tmp_path / "pages"
    box = make_box(
        f'[[printer]]\nname = "png"\ndriver = "file"\nformat = "png"\nfolder = "{pages}"\n'
        "[print]\ndpi = 50\n"
    )
    fred, _ = store_images(box, tmp_path / "fred", 1, patient="FILM^FRED")
    wilma, _ = store_images(box, tmp_path / "wilma", 1, patient="FILM^WILMA")
    assert box.cli("print", fred, wilma, "--layout", "2x1").returncode == 0
    job = box.wait_job("print", "done")
    assert "2 film(s)" in job["progress"], job  # room for both on one, yet two films
    assert len(list(pages.glob("*.png"))) == 2


def test_a_film_printed_to_the_box_goes_on_to_a_film_printer(make_box, camera, tmp_path):
    require("dcmpsprt", "dcmprscu")
    box = make_box(camera_config(camera.port) + 'scp_printer = "film"\n')
    modality = FilmPrinterPeer(tmp_path / "modality", box_port=box.port)
    image = Path(get_testdata_file("MR_small.dcm"))
    sent = modality.print_to([image, image], "-l", "1", "2", "--filmsize", "10INX12IN")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    box.wait_job("print", "done")
    (film,) = camera.films()
    assert film.FilmBoxContentSequence[0].ImageDisplayFormat == "STANDARD\\1,2"
    assert film.FilmBoxContentSequence[0].FilmSizeID == "10INX12IN"
    received = [im for im in modality.objects("1.2.840.10008.5.1.1.29")]
    printed = camera.images()
    assert len(printed) == 2
    # The image boxes went on unchanged: what the modality rendered is what was printed.
    assert any(np.array_equal(p.pixel_array, r.pixel_array) for p in printed for r in received)


def test_each_frame_of_a_multiframe_image_is_printed(make_box, camera, tmp_path):
    box = make_box(camera_config(camera.port, layout='"STANDARD\\\\2,2"'))
    path = tmp_path / "frames.dcm"
    ct_dataset(generate_uid(), generate_uid(), 1, rows=64, columns=64, frames=3).save_as(
        path, enforce_file_format=True
    )
    assert storescu(box.port, [path]).returncode == 0
    study = str(pydicom.dcmread(path).StudyInstanceUID)
    assert box.cli("print", study).returncode == 0
    box.wait_job("print", "done")
    assert len(camera.films()) == 1 and len(camera.images()) == 3


def test_grey_and_colour_images_of_a_study_share_a_colour_film(make_box, tmp_path):
    require("storescu")
    pages = tmp_path / "pages"
    box = make_box(
        f'[[printer]]\nname = "png"\ndriver = "file"\nformat = "png"\nfolder = "{pages}"\n'
        'layout = "STANDARD\\\\2,1"\n[print]\ndpi = 50\n'
    )
    study, files = store_images(box, tmp_path / "study", 1)
    grey = pydicom.dcmread(files[0])
    colour = ct_dataset(study, generate_uid(), 2, rows=64, columns=64,
                        patient=str(grey.PatientName), patient_id=grey.PatientID)  # fmt: skip
    colour.SOPClassUID = colour.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    colour.PlanarConfiguration = 0
    colour.BitsAllocated, colour.BitsStored, colour.HighBit = 8, 8, 7
    del colour.RescaleIntercept, colour.RescaleSlope
    colour.PixelData = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8).tobytes()
    colour.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    assert storescu(box.port, [tmp_path / "rgb.dcm"]).returncode == 0
    assert box.cli("print", study).returncode == 0
    job = box.wait_job("print", "done")
    assert "1 film(s)" in job["progress"], job
    (png,) = pages.glob("*.png")
    page = np.asarray(Image.open(png))
    assert page.ndim == 3 and page.shape[2] == 3  # one colour film for both


def test_a_film_printed_to_the_box_becomes_a_pdf(make_box, tmp_path):
    require("dcmpsprt", "dcmprscu")
    box = make_box()
    modality = FilmPrinterPeer(tmp_path / "modality", box_port=box.port)
    image = Path(get_testdata_file("CT_small.dcm"))
    assert modality.print_to([image], "-l", "1", "2").returncode == 0
    box.wait_job("print", "done")
    (pdf,) = (box.data_dir / "print" / "pdf").glob("*.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"/Count 1" in data
    assert not list((box.data_dir / "print" / "spool").iterdir())  # the spooled film is gone


def association(port: int) -> object:
    ae = AE(ae_title="BADPRINT")
    ae.add_requested_context(GRAY_META, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMBOX")
    assert assoc.is_established
    return assoc


def film_box(session_uid: str, display_format: str | None = "STANDARD\\2,2") -> Dataset:
    ds = Dataset()
    if display_format is not None:
        ds.ImageDisplayFormat = display_format
    ref = Dataset()
    ref.ReferencedSOPClassUID = FILM_SESSION
    ref.ReferencedSOPInstanceUID = session_uid
    ds.ReferencedFilmSessionSequence = Sequence([ref])
    return ds


def test_bad_print_requests_get_the_right_status(make_box):
    box = make_box()
    assoc = association(box.port)
    try:
        status, _ = assoc.send_n_create(film_box("1.2.3"), FILM_BOX, generate_uid(),
                                        meta_uid=GRAY_META)  # fmt: skip
        assert status.Status == 0x0110  # a film box before any session
        session = Dataset()
        session.NumberOfCopies = 150
        status, _ = assoc.send_n_create(session, FILM_SESSION, generate_uid(), meta_uid=GRAY_META)
        assert status.Status == 0x0106  # copies out of range
        session.NumberOfCopies = 1
        session_uid = generate_uid()
        status, _ = assoc.send_n_create(session, FILM_SESSION, session_uid, meta_uid=GRAY_META)
        assert status.Status == 0x0000
        status, _ = assoc.send_n_create(film_box(session_uid, None), FILM_BOX, generate_uid(),
                                        meta_uid=GRAY_META)  # fmt: skip
        assert status.Status == 0x0120  # no Image Display Format
        box_uid = generate_uid()
        status, created = assoc.send_n_create(film_box(session_uid), FILM_BOX, box_uid,
                                              meta_uid=GRAY_META)  # fmt: skip
        assert status.Status == 0x0000 and len(created.ReferencedImageBoxSequence) == 4
        first = created.ReferencedImageBoxSequence[0]
        image = Dataset()
        image.ImageBoxPosition = 5  # beyond STANDARD\2,2, and not this box's position
        box_class, box_instance = first.ReferencedSOPClassUID, first.ReferencedSOPInstanceUID
        status, _ = assoc.send_n_set(image, box_class, box_instance, meta_uid=GRAY_META)
        assert status.Status == 0x0106
        status, _ = assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=GRAY_META)
        assert status.Status == 0xB603  # nothing in the film box: nothing printed
    finally:
        assoc.release()
    assert "BADPRINT" in box.output()  # each refusal logged with the caller
    assert not box.jobs("print")


def test_a_print_route_prints_the_key_images_of_a_study(make_box, camera, tmp_path):
    route = (
        '[[route]]\nwhen = { calling_ae = "STORESCU" }\nprint = "film"\nprint_key_images = true\n'
    )
    box = make_box(camera_config(camera.port) + route)
    study, files = store_images(box, tmp_path / "study", 3)
    key = pydicom.dcmread(files[1])
    kos = key_object(key)
    path = tmp_path / "kos.dcm"
    kos.save_as(path, enforce_file_format=True)
    assert storescu(box.port, [path]).returncode == 0
    job = box.wait_job("print", "done", timeout=90)
    assert "1 film(s)" in job["progress"]
    (printed,) = camera.images()
    below_label = slice(40, None)  # the film's first image carries the patient's name
    source = key.pixel_array[below_label].astype(float).ravel()
    assert abs(np.corrcoef(source, printed.pixel_array[below_label].ravel())[0, 1]) > 0.99


def key_object(image: Dataset) -> Dataset:
    """A Key Object Selection naming ``image``, in its study."""
    kos = Dataset()
    kos.file_meta = FileMetaDataset()
    kos.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    kos.SOPClassUID = KOS
    kos.SOPInstanceUID = generate_uid()
    kos.StudyInstanceUID = image.StudyInstanceUID
    kos.SeriesInstanceUID = generate_uid()
    kos.PatientID, kos.PatientName = image.PatientID, image.PatientName
    kos.Modality = "KO"
    kos.SeriesNumber = kos.InstanceNumber = 99
    kos.ValueType = "CONTAINER"
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    study = Dataset()
    study.StudyInstanceUID = image.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    kos.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    return kos
