"""``dicombox media import PATH``: the File-set Reader. A medium's DICOMDIR (a mounted
disc or stick, a folder, or an ISO image) is listed, and the chosen studies are taken
into the store through the same ingest as a C-STORE: checked, fsynced, indexed, with
the duplicate policy and coercion applied."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pycdlib
from pydicom import dcmread
from pydicom.fileset import FileSet

from dicombox.core.box import Box
from dicombox.core.header import dataset_offset
from dicombox.core.ingest import SUCCESS, Arrival, Ingest
from dicombox.core.tables import format_table

PIECE = 1 << 20


@contextmanager
def opened_medium(box: Box, path: Path) -> Iterator[FileSet]:
    """The file-set at ``path``: a DICOMDIR, the folder holding one, or an ISO image
    (extracted to a scratch folder of the store for the time of the import)."""
    if path.is_file() and path.suffix.lower() == ".iso":
        scratch = box.store.scratch()
        try:
            _extract_iso(path, scratch)
            yield FileSet(scratch / "DICOMDIR")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    dicomdir = path if path.is_file() else path / "DICOMDIR"
    if not dicomdir.exists():
        raise FileNotFoundError(f"{path}: no DICOMDIR there; is the medium mounted?")
    yield FileSet(dicomdir)


def _extract_iso(iso_path: Path, folder: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        for root, _dirs, files in iso.walk(iso_path="/"):
            for name in files:
                source = f"{root.rstrip('/')}/{name}"
                target = folder / source.lstrip("/").split(";")[0].rstrip(".")
                target.parent.mkdir(parents=True, exist_ok=True)
                iso.get_file_from_iso(str(target), iso_path=source)
    finally:
        iso.close()


def study_rows(fileset: FileSet) -> list[list[str]]:
    counts: Counter[str] = Counter()
    first: dict[str, object] = {}
    for instance in fileset:
        uid = str(instance.StudyInstanceUID)
        counts[uid] += 1
        first.setdefault(uid, instance)
    return [
        [
            str(getattr(first[uid], "PatientName", "")),
            str(getattr(first[uid], "PatientID", "")),
            str(getattr(first[uid], "StudyDate", "")),
            str(counts[uid]),
            uid,
        ]
        for uid in counts
    ]


def import_instances(box: Box, fileset: FileSet, studies: set[str]) -> Counter[str]:
    """Take the instances of ``studies`` (all when empty) in; counts by outcome."""
    ingest = Ingest(box)
    outcome: Counter[str] = Counter()
    for instance in fileset:
        if studies and str(instance.StudyInstanceUID) not in studies:
            continue
        path = Path(instance.path)
        meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
        arrival = Arrival(
            transfer_syntax=str(meta.TransferSyntaxUID),
            source_ae="MEDIA",
            sop_class_uid=str(meta.MediaStorageSOPClassUID),
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        )
        sink = ingest.open(arrival)
        with open(path, "rb") as f:
            f.seek(dataset_offset(path))
            while piece := f.read(PIECE):
                sink.write(piece)
        sink.close()
        result = ingest.finish(sink, arrival)
        outcome["imported" if result.status == SUCCESS else f"refused {result.status:04X}"] += 1
    return outcome


def import_command(box: Box, args: argparse.Namespace) -> int:
    try:
        with opened_medium(box, Path(args.path)) as fileset:
            rows = study_rows(fileset)
            print(format_table(rows, ["PATIENT", "ID", "DATE", "IMAGES", "STUDY UID"]))
            if args.list:
                return 0
            outcome = import_instances(box, fileset, set(args.study))
    except (OSError, ValueError) as exc:
        print(f"dicombox media import: {exc}", file=sys.stderr)
        return 2
    print(", ".join(f"{n} {what}" for what, n in sorted(outcome.items())) or "nothing imported")
    return 0 if set(outcome) <= {"imported"} else 1


def add_verb(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("media", help="media: 'media import PATH' reads a DICOMDIR in")
    verbs = p.add_subparsers(dest="media_verb", required=True)
    imp = verbs.add_parser("import", help="list a medium's studies and copy them into the store")
    imp.add_argument("path", help="a mounted disc or stick, a folder, a DICOMDIR or an ISO")
    imp.add_argument("--study", action="append", default=[], metavar="UID", help="only these")
    imp.add_argument("--list", action="store_true", help="only list what the medium holds")
    imp.set_defaults(func=import_command)
