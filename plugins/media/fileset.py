"""The File-set Creator: stored instances onto a PS3.10 file-set for media export.

``build_fileset`` turns the store's Part 10 files into a folder that becomes the root of
a disc or USB stick: every instance in a transfer syntax the Media Storage Application
Profile (PS3.11) allows, a DICOMDIR in Explicit VR Little Endian at the root, and the
IHE PDI README.TXT and INDEX.HTM next to it.

pydicom's ``FileSet`` builds the directory records and names the files. Its layout is
kept as is (``PT000000/ST000000/SE000000/IM000000`` under the root, the first letters
saying the record type): every File ID is at most 4 components of 8 upper-case letters
and digits without extension (PS3.10 8.2, PS3.12 F.1.2), which ISO 9660 level 1 takes.

The instance files themselves are not written by ``FileSet``: it would read each
instance whole, save a copy in the system's temporary directory (a Blu-ray's worth in
/tmp) and re-encode it. The records are made from a pixel-less header, the tree is
built here (``_add``), and ``FileSet`` stages an empty stand-in per instance; the real
file, the data set bytes ``core.transcode`` makes behind the box's own file meta, is
written in the folder and moved over the stand-in ``FileSet.write`` leaves at the
instance's File ID.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.fileset import DIRECTORY_RECORDERS, FileInstance, FileSet, RecordNode
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
)

from dicombox.core.header import dataset_offset
from dicombox.core.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicombox.core.net.dataset_codec import decode_dataset, encode_dataset
from dicombox.core.transcode import TranscodeError, transcode
from dicombox.plugins.media.pdi import VIEWER, write_pdi
from dicombox.plugins.media.previews import write_previews

log = logging.getLogger("dicombox.media")


@dataclass(frozen=True)
class Profile:
    """A Media Storage Application Profile as far as the box applies it: the transfer
    syntaxes an instance may keep as stored; anything else goes to Explicit VR LE."""

    name: str
    allowed: tuple[str, ...]


_J2K = (ExplicitVRLittleEndian, JPEG2000Lossless, JPEG2000)
_JPEG = (ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1)
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("STD-GEN-CD", (ExplicitVRLittleEndian,)),
        Profile("STD-GEN-DVD-J2K", _J2K),
        Profile("STD-GEN-USB-J2K", _J2K),
        Profile("STD-GEN-BD", _J2K),
        Profile("STD-GEN-DVD-JPEG", (*_JPEG, JPEGLossless)),
    )
}

FILESET_ID_LENGTH = 16  # PS3.10 8.1: a CS value of at most 16 characters
_FILESET_ID = re.compile(r"[A-Z0-9_ ]*")
_STAGING = "DICOMBOX.TMP"  # inside the folder: same file system, so moving is renaming
_STANDARD_ROOT = "1.2.840.10008."


class MediaError(Exception):
    """The file-set cannot be built at all (bad arguments, nothing writable, disk)."""


@dataclass
class FileSetReport:
    folder: Path
    written: int
    converted: int  # written in another transfer syntax than stored
    refused: list[tuple[Path, str]] = field(default_factory=list)  # left out, why in a line
    size_bytes: int = 0  # everything under the folder: what the medium must hold
    already: int = 0  # on the medium being updated already, so not written again


def build_fileset(
    sources: Iterable[Path],
    folder: Path,
    profile: str = "STD-GEN-CD",
    fileset_id: str = "DICOMBOX",
    label: dict[str, str] | None = None,
    update: bool = False,
    deidentify: Callable[[Dataset], Dataset] | None = None,
    previews: bool = False,
    viewer: Path | None = None,
    viewer_start: str = "",
) -> FileSetReport:
    """Write ``sources`` (Part 10 files) as a file-set rooted at ``folder`` (empty or
    not there yet) under ``profile``, with the DICOMDIR and the IHE PDI files.

    An instance that cannot be converted to what the profile allows, or whose header
    cannot make its directory records, is left out and listed in ``refused``. Raises
    MediaError for an unknown profile, a bad File-set ID, a folder that is not empty,
    or when not one instance could be written.

    With ``update`` (the File-set Updater, for a USB stick), a DICOMDIR already in
    ``folder`` is kept and the new instances are added to it; instances it holds are
    not written again. ``deidentify`` changes each data set before it is written (one
    export's de-identification, see ``deidentify.Deidentifier``). ``previews`` adds the
    IHE PDI web content: ``IHE_PDI/`` with a JPEG preview per series. ``viewer`` is a
    folder copied whole as ``VIEWER/`` (a viewer program for the medium), and
    ``viewer_start`` the program in it that README.TXT and INDEX.HTM tell one to start.
    """
    chosen = _profile(profile)
    _check_fileset_id(fileset_id)
    report = FileSetReport(folder, written=0, converted=0)
    staging = folder / _STAGING
    existing = folder / "DICOMDIR"
    updating = update and existing.exists()
    if updating:
        fs = FileSet(existing)
    else:
        fs = FileSet()
        fs.ID = fileset_id or None
    _prepare(folder, staging, allow_content=update)
    try:
        kept = _known(fs) if updating else ([], _Branches(), set())
        staged, rows = _stage_all(
            sources, chosen, staging, fs, report, kept[1], kept[2], deidentify
        )
        written = _write(fs, folder, staged) if staged else []
        report.written = len(staged)
        rows = kept[0] + rows
        if previews and written:
            write_previews(folder, written)
        if viewer is not None:
            # symlinks=False: a link becomes the file it names, as a disc holds no links.
            shutil.copytree(viewer, folder / VIEWER, symlinks=False, dirs_exist_ok=True)
        write_pdi(folder, rows, _label(label, rows), viewer_start)
    except OSError as exc:  # the folder's disk, or pydicom's scratch copy of a header
        raise MediaError(f"cannot write the file-set in {folder}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # refused and duplicate files
    report.size_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return report


def _stage_all(
    sources: Iterable[Path],
    profile: Profile,
    staging: Path,
    fs: FileSet,
    report: FileSetReport,
    branches: _Branches,
    present: set[str],
    deidentify: Callable[[Dataset], Dataset] | None = None,
) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """Convert each source into ``staging`` and stage its records in ``fs``; return the
    real files by SOP Instance UID and the PDI rows. Refusals go into ``report``."""
    staged: dict[str, Path] = {}
    rows: list[dict[str, str]] = []
    numbers: dict[str, int] = {}  # Series Instance UID -> instances so far (see _fill_keys)
    already = 0  # on the medium being updated
    for n, source in enumerate(map(Path, sources)):
        try:
            header, converted = _stage_one(source, profile, staging / str(n), deidentify)
            if header.SOPInstanceUID in present:
                already += 1
                continue  # the medium being updated has it
            if header.SOPInstanceUID in staged:
                continue  # the store had it twice: one copy is on the medium
            _fill_keys(header, numbers)
            _sr_keys(header)
            _add(fs, header, branches)
        except _REFUSALS as exc:
            why = _one_line(exc)
            report.refused.append((source, why))
            # The reason is the caller's to tell (a burn job's problems, the export's
            # output); the exception behind it, a decoder's words and traceback, is for
            # whoever reads the log to dig deeper.
            log.info("%s left out of the file-set: %s", source.name, why, exc_info=exc)
            continue
        staged[header.SOPInstanceUID] = staging / str(n)
        report.converted += converted
        rows.append(_row(header))
    report.already = already
    if not staged and not already:
        reasons = "; ".join(f"{p.name}: {why}" for p, why in report.refused[:3])
        raise MediaError(f"no instance could go on the medium ({reasons or 'none given'})")
    return staged, rows


class _Unreadable(Exception):
    """A source that is no DICOM file pydicom can read."""


class _Undecodable(Exception):
    """A source whose data cannot be decoded to be converted (damaged pixel data)."""


REASON_LENGTH = 200  # a reason is one line an operator reads, not a dump


def _one_line(exc: Exception) -> str:
    """Why an instance was left out, in one line. Our own refusals say it in plain words;
    anything else (pydicom refusing a directory record) is cut to its first line."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:REASON_LENGTH]


# What leaves one instance out rather than failing the medium: a damaged source, a
# syntax the box cannot convert, and pydicom refusing to make its directory records
# (ValueError, or AttributeError/KeyError/TypeError for an attribute missing or odd).
_REFUSALS = (
    _Unreadable,
    _Undecodable,
    TranscodeError,
    ValueError,
    AttributeError,
    KeyError,
    TypeError,
)


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise MediaError(f"unknown media profile {name!r} (known: {known})") from None


def _check_fileset_id(fileset_id: str) -> None:
    if len(fileset_id) > FILESET_ID_LENGTH or not _FILESET_ID.fullmatch(fileset_id):
        raise MediaError(
            f"File-set ID {fileset_id!r} must be at most {FILESET_ID_LENGTH} characters "
            "of A-Z, 0-9, _ and space"
        )


def _prepare(folder: Path, staging: Path, allow_content: bool = False) -> None:
    """Make ``folder`` (empty, unless updating) and the staging folder inside it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not allow_content and any(folder.iterdir()):
            raise MediaError(f"{folder} is not empty: a file-set needs a folder of its own")
        staging.mkdir()
    except OSError as exc:
        raise MediaError(f"cannot use {folder} for the file-set: {exc}") from exc


def _stage_one(
    source: Path,
    profile: Profile,
    path: Path,
    deidentify: Callable[[Dataset], Dataset] | None = None,
) -> tuple[Dataset, bool]:
    """Write ``source`` converted for ``profile`` (and de-identified) as ``path``;
    return the written file's header (no pixel data) and whether the syntax changed."""
    try:
        stored = dcmread(source, stop_before_pixels=True)
        syntax = str(stored.file_meta.TransferSyntaxUID)
    except Exception as exc:  # pydicom's errors on a damaged file, whatever their type
        raise _Unreadable("not a readable DICOM file (damaged or not DICOM)") from exc
    target = syntax if syntax in profile.allowed else ExplicitVRLittleEndian
    if target == syntax and deidentify is None:
        # The common case, and most of a disc's bytes: the data set goes on the medium
        # as stored, copied by the kernel behind the box's own meta. The store holds
        # only files found whole when they arrived, so there is nothing to re-check.
        stored.file_meta = _file_meta(stored, target)
        _copy_part10(source, path, stored.file_meta)
        return stored, False
    # Never lossy: the target is either what the instance already is or native.
    try:
        data = transcode(source, target, allow_lossy=False)
    except TranscodeError as exc:
        if exc.__cause__ is None:
            raise  # says in its own words why not (no decoder for that syntax …)
        raise _Undecodable(
            f"the file is damaged: its pixel data cannot be decoded, so it cannot be "
            f"converted to {UID(target).name} as {profile.name} requires"
        ) from exc
    if deidentify is not None:
        changed = deidentify(decode_dataset(data, target))
        data, stored = encode_dataset(changed, target), changed  # new UIDs for the meta
    stored.file_meta = _file_meta(stored, target)
    with path.open("wb") as out:
        _write_preamble_and_meta(out, stored.file_meta)
        out.write(data)
    return stored, target != syntax


def _file_meta(stored: Dataset, target: str) -> FileMetaDataset:
    """The box's own meta for a file it writes (PS3.10 7.1): the UIDs come from the
    data set, not the old meta, which a sender may have got wrong."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = stored.SOPClassUID
    meta.MediaStorageSOPInstanceUID = stored.SOPInstanceUID
    meta.TransferSyntaxUID = target
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _write_preamble_and_meta(out: BinaryIO, meta: FileMetaDataset) -> None:
    fp = DicomFileLike(out)
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)


def _copy_part10(source: Path, path: Path, meta: FileMetaDataset) -> None:
    """``path`` as a Part 10 file with ``meta`` and the data set of ``source``, bytes
    unchanged."""
    offset = dataset_offset(source)
    with source.open("rb") as src, path.open("wb") as out:
        _write_preamble_and_meta(out, meta)
        out.flush()
        src.seek(offset)
        # sendfile: the kernel moves the pixels, Python never holds them.
        left = os.fstat(src.fileno()).st_size - offset
        while left > 0:
            sent = os.sendfile(out.fileno(), src.fileno(), None, left)
            if sent == 0:
                raise OSError(f"{source} ended while copying it")
            left -= sent


# Record keys that are Type 1 in the PATIENT, STUDY, SERIES and IMAGE (or RT, SR ...)
# records (PS3.3 F.5) but only Type 2 or 3 in many IODs, so real instances lack them
# (Study ID and date from a secondary capture, Instance Number of an RT Plan, Patient ID
# of a test object). pydicom refuses such an instance; the box puts the key in the
# record only, with a value that says "unknown" or comes from a neighbouring attribute:
# a disc without the patient's RT plan is worse than a directory key the instance does
# not carry, and the instance stays as it was stored.
def _fill_keys(ds: Dataset, numbers: dict[str, int]) -> None:
    if not ds.get("PatientID"):
        # Two unnamed patients must not merge into one PATIENT record (the key must be
        # unique in the file-set), so the stand-in derives from the name or the study.
        seed = str(ds.get("PatientName") or ds.get("StudyInstanceUID") or ds.SOPInstanceUID)
        ds.PatientID = "UNKNOWN-" + hashlib.sha1(seed.encode()).hexdigest()[:8].upper()
    if not ds.get("StudyDate"):
        ds.StudyDate = _first(ds, "SeriesDate", "AcquisitionDate", "ContentDate") or "19000101"
    if not ds.get("StudyTime"):
        ds.StudyTime = _first(ds, "SeriesTime", "AcquisitionTime", "ContentTime") or "000000"
    if not ds.get("StudyID"):
        ds.StudyID = str(ds.get("AccessionNumber") or "1")[:16]
    if not ds.get("StudyInstanceUID"):
        ds.StudyInstanceUID = _derived_uid("study", ds.PatientID)
    if not ds.get("Modality"):
        ds.Modality = "OT"  # "other", PS3.3 C.7.3.1.1.1
    if not ds.get("SeriesInstanceUID"):
        ds.SeriesInstanceUID = _derived_uid("series", str(ds.StudyInstanceUID))
    if ds.get("SeriesNumber") in (None, ""):
        ds.SeriesNumber = 1
    series = str(ds.SeriesInstanceUID)
    numbers[series] = numbers.get(series, 0) + 1
    if ds.get("InstanceNumber") in (None, ""):
        ds.InstanceNumber = numbers[series]  # its place among the series' instances


def _sr_keys(ds: Dataset) -> None:
    """Make an SR or key object header give the keys PS3.3 F.5.19/F.5.21 ask for.
    pydicom copies the whole Content Sequence into the record, but the record holds
    only the root's HAS CONCEPT MOD items: the whole tree (CONTAINS …) is invalid there
    and can make the DICOMDIR as big as the reports. And it takes Verification DateTime
    from the root, where a verified SR does not have it: the key (Type 1C when
    VERIFIED) is the latest Verifying Observer's."""
    if ds.get("ValueType") != "CONTAINER" or "ConceptNameCodeSequence" not in ds:
        return  # not an SR document: Content Sequence means something else there
    if "ContentSequence" in ds:
        mods = [i for i in ds.ContentSequence if i.get("RelationshipType") == "HAS CONCEPT MOD"]
        if mods:
            ds.ContentSequence = mods
        else:
            del ds.ContentSequence
    if ds.get("VerificationFlag") == "VERIFIED" and not ds.get("VerificationDateTime"):
        observers = ds.get("VerifyingObserverSequence") or []
        times = [str(i.VerificationDateTime) for i in observers if i.get("VerificationDateTime")]
        if times:
            ds.VerificationDateTime = max(times)


def _first(ds: Dataset, *keywords: str) -> str:
    return next((str(ds.get(k)) for k in keywords if ds.get(k)), "")


def _derived_uid(kind: str, seed: str) -> str:
    """The same stand-in UID for every instance that lacks it alike, so they share a
    record (2.25: UUID-derived, PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'dicombox-{kind}-{seed}').int}"


def _known(fs: FileSet) -> tuple[list[dict[str, str]], _Branches, set[str]]:
    """What a file-set being updated already holds: PDI rows, the tree's branches, and
    its SOP Instance UIDs."""
    branches = _Branches()
    for patient in fs._tree.children:
        branches.nodes[(patient.key,)] = patient
        for study in patient.children:
            branches.nodes[(patient.key, study.key)] = study
            for series in study.children:
                branches.nodes[(patient.key, study.key, series.key)] = series
    rows = [_row(dcmread(i.path, stop_before_pixels=True)) for i in fs]
    return rows, branches, {str(i.SOPInstanceUID) for i in fs}


class _Branches:
    """The PATIENT, STUDY and SERIES nodes already in the tree, by their key path.

    pydicom's ``FileSet.add`` finds an instance's place by comparing it with every
    instance and every sibling already added, which grows with the square of a study's
    size (seconds for 1000 images). Here each place is one dictionary lookup; the nodes,
    records and staging are pydicom's own, as ``add`` makes them."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, ...], RecordNode] = {}


def _add(fs: FileSet, header: Dataset, branches: _Branches) -> None:
    """Stage ``header`` in ``fs`` with the records its SOP class calls for."""
    if str(header.SOPClassUID).startswith(_STANDARD_ROOT):
        records = list(fs._recordify(header))  # IMAGE, SR DOCUMENT, RT PLAN … as pydicom picks
    else:
        # A private class (Siemens CSA Non-Image …) would get an IMAGE record, and a
        # reader would try to display it; PS3.3 F.5.28 has PRIVATE records for them.
        records = _private_records(header)
    parent: RecordNode = fs._tree
    path: tuple[str, ...] = ()
    for record in records[:-1]:
        node = RecordNode(record)
        path = (*path, node.key)
        known = branches.nodes.get(path)
        if known is None:
            node.parent = parent
            branches.nodes[path] = known = node
        parent = known
    leaf = RecordNode(records[-1])
    leaf.parent = parent
    instance = FileInstance(leaf)
    leaf.instance = instance
    fs._stage["+"][instance.SOPInstanceUID] = instance
    fs._instances.append(instance)
    instance._apply_stage("+")
    if fs.path:  # updating: FileSet.write copies a stand-in, _write replaces it (empty will do)
        Path(instance.path).touch()


def _private_records(ds: Dataset) -> list[Dataset]:
    """PATIENT, STUDY, SERIES and PRIVATE records for an instance of a private class.
    The Private Record UID names the kind of record, here the instance's SOP class."""
    records = []
    for kind in ("PATIENT", "STUDY", "SERIES"):
        record = DIRECTORY_RECORDERS[kind](ds)
        record.DirectoryRecordType = kind
        if "SpecificCharacterSet" in ds:
            record.SpecificCharacterSet = ds.SpecificCharacterSet
        records.append(record)
    leaf = Dataset()
    leaf.DirectoryRecordType = "PRIVATE"
    leaf.PrivateRecordUID = ds.SOPClassUID
    leaf.ReferencedFileID = None
    leaf.ReferencedSOPClassUIDInFile = ds.SOPClassUID
    leaf.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
    leaf.ReferencedTransferSyntaxUIDInFile = ds.file_meta.TransferSyntaxUID
    records.append(leaf)
    return records


def _write(fs: FileSet, folder: Path, staged: dict[str, Path]) -> list[Path]:
    """Put each staged file at its File ID and write the DICOMDIR; returns the files.

    A new file-set is written here: each file is renamed into place, and FileSet only
    encodes the DICOMDIR (``FileSet.write`` would copy a stand-in per instance first). An
    existing one being updated goes through ``FileSet.write``, which may also move the
    files already there, and the real files then replace the stand-ins it copied."""
    if fs.path:
        fs.write()
        written = []
        for instance in fs:
            if instance.SOPInstanceUID in staged:  # an updated medium's older files stay
                os.replace(staged[instance.SOPInstanceUID], instance.path)
                written.append(Path(instance.path))
        return written
    root = folder.resolve()
    written = []
    for instance in fs:
        file_id = instance.FileID
        target = root / file_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged[instance.SOPInstanceUID], target)
        instance.node._record.ReferencedFileID = file_id.split(os.path.sep)
        written.append(target)
    with open(root / "DICOMDIR", "wb") as out:
        fs._write_dicomdir(DicomFileLike(out))
    return written


def _row(ds: Dataset) -> dict[str, str]:
    """What the PDI files say about one instance."""
    return {
        "patient_name": str(ds.get("PatientName") or ""),
        "patient_id": str(ds.PatientID),
        "birth_date": str(ds.get("PatientBirthDate") or ""),
        "study_uid": str(ds.StudyInstanceUID),
        "study_date": str(ds.StudyDate),
        "study_description": str(ds.get("StudyDescription") or ""),
        "accession": str(ds.get("AccessionNumber") or ""),
        "series_uid": str(ds.SeriesInstanceUID),
        "series_number": str(ds.SeriesNumber),
        "modality": str(ds.Modality),
        "series_description": str(ds.get("SeriesDescription") or ""),
        "institution": str(ds.get("InstitutionName") or ""),
    }


def _label(label: dict[str, str] | None, rows: list[dict[str, str]]) -> dict[str, str]:
    """The caller's label, with what it leaves out taken from the first instance."""
    first = rows[0]
    defaults = {
        "patient": first["patient_name"],
        "patient_id": first["patient_id"],
        "date": first["study_date"],
        "institution": first["institution"],
        "description": first["study_description"],
    }
    given = {k: v for k, v in (label or {}).items() if v}
    return {**defaults, **given}
