"""The instances an export left out, one line each, as an operator can find them again:
"left out CT series 2 image 14 (1.2.840…): the file is damaged: …".

A burn job keeps these lines as its problems (``dicombox jobs``, the console, the front
panel); ``dicombox export usb`` writes them to standard error. Why each was left out is
the file-set's one-line reason; the exception behind it is in the log.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

_NAMING = ["Modality", "SeriesNumber", "InstanceNumber", "SOPInstanceUID"]


def left_out_lines(refused: list[tuple[Path, str]]) -> list[str]:
    """One line per instance left out: which it is, and why."""
    return [f"left out {describe(path)}: {why}" for path, why in refused]


def describe(path: Path) -> str:
    """The instance as its header names it ("CT series 2 image 14 (UID)"), or the file's
    name when the header cannot be read."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_NAMING)  # type: ignore[arg-type]
    except Exception:  # the file is why it was left out: its name must do
        return path.name
    series, number = ds.get("SeriesNumber"), ds.get("InstanceNumber")
    parts = [
        str(ds.get("Modality") or ""),
        f"series {series}" if series not in (None, "") else "",
        f"image {number}" if number not in (None, "") else "",
    ]
    named = " ".join(p for p in parts if p) or "instance"
    uid = ds.get("SOPInstanceUID")
    return f"{named} ({uid})" if uid else f"{named} ({path.name})"
