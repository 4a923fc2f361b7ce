"""``dicombox send REMOTE STUDY_UID|PATH…``: deliver stored studies, or files and folders
from disk, to a [[remote]] now, on one association, with progress on the terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dicombox.core.box import Box
from dicombox.core.jobs import PermanentJobError, TransientJobError
from dicombox.core.net.sending import StoredFile
from dicombox.plugins.storage.forward import send_to_remote, stored_files


def _from_disk(path: Path) -> list[StoredFile]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    found = []
    for file in files:
        try:
            meta = dcmread(file, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            fm = meta.file_meta
            found.append(
                StoredFile(
                    file,
                    str(fm.MediaStorageSOPClassUID),
                    str(fm.MediaStorageSOPInstanceUID),
                    str(fm.TransferSyntaxUID),
                )
            )
        except (InvalidDicomError, AttributeError, OSError) as exc:
            print(f"skipping {file}: not a DICOM Part 10 file ({exc})", file=sys.stderr)
    return found


def _from_index(box: Box, study_uid: str) -> list[StoredFile]:
    return stored_files(box, [uid for uid, _ in box.index.study_instances([study_uid])])


def send_command(box: Box, args: argparse.Namespace) -> int:
    if box.config.remote_named(args.remote) is None:
        known = ", ".join(r.name for r in box.config.remote) or "(none configured)"
        print(f"dicombox send: {args.remote!r} is no [[remote]] (known: {known})", file=sys.stderr)
        return 2
    items: list[StoredFile] = []
    for what in args.what:
        path = Path(what)
        found = _from_disk(path) if path.exists() else _from_index(box, what)
        if not found:
            print(f"dicombox send: {what}: no such file, folder or stored study", file=sys.stderr)
            return 2
        items += found

    def progress(text: str) -> None:
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    try:
        report = send_to_remote(box, args.remote, items, progress)
    except (TransientJobError, PermanentJobError) as exc:
        print(f"\ndicombox send: {exc}", file=sys.stderr)
        return 1
    print(f"\n{args.remote}: {report.summary}")
    return 0 if not report.refused and not report.deferred else 1


def add_verb(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("send", help="C-STORE stored studies or files to a [[remote]]")
    p.add_argument("remote", help="a [[remote]] name")
    p.add_argument("what", nargs="+", metavar="STUDY_UID|PATH")
    p.set_defaults(func=send_command)
