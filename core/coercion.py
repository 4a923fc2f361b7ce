"""Coercion: an arriving instance's attributes corrected before it is stored (from its
worklist item, say), never silently.

A plugin's ``dicombox_coerce`` hook returns a ``Coercion`` (the new values and why).
The received file is then read whole, changed, and written again in its place before
it is stored. Each change keeps the replaced values in an Original Attributes Sequence
(0400,0561) item, and the ingest announces it as an ``instance.coerced`` event, which
the audit trail records. Only instances some plugin wants to change pay for this.
"""

from __future__ import annotations

import struct
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicombox.core.store import IncomingFile

UTF8 = "ISO_IR 192"


@dataclass
class Coercion:
    changes: dict[str, Any]  # DICOM keyword -> new value (a list of Datasets for a sequence)
    reason: str  # for the audit trail: "worklist item A1234"
    defaults: dict[str, Any] = field(default_factory=dict)  # set only where absent or empty


def _same(element: Any, value: Any) -> bool:
    if element is None:
        return value in ("", None, [])
    if element.VR == "SQ":
        return False  # sequences are always replaced as a whole
    old = element.value
    if isinstance(value, list | tuple):
        return [str(v) for v in (old if isinstance(old, list | tuple) else [old])] == [
            str(v) for v in value
        ]
    return str(old if old is not None else "") == str(value)


def _element(ds: Dataset, keyword: str) -> Any:
    """The data element, or None: not ``ds.get``, which gives the value, and an empty
    value ('') is still an element to compare with."""
    try:
        return ds[keyword]
    except KeyError:
        return None


def _needs_utf8(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_needs_utf8(v) for v in value)
    return isinstance(value, str) and not value.isascii()


def coerce_file(
    incoming: IncomingFile, coercions: list[Coercion], modifying_system: str, source: str
) -> list[str]:
    """Apply ``coercions`` to the received file; returns the keywords that changed
    (none: the file is left as it was)."""
    ds = dcmread(incoming.path)
    wanted: dict[str, Any] = {}
    for coercion in coercions:
        wanted.update(coercion.changes)
        for keyword, value in coercion.defaults.items():
            if keyword not in wanted and str(ds.get(keyword, "") or "") == "":
                wanted[keyword] = value
    changes = {k: v for k, v in wanted.items() if not _same(_element(ds, k), v)}
    if not changes:
        return []
    replaced = Dataset()
    if any(_needs_utf8(v) for v in changes.values()) and ds.get("SpecificCharacterSet") != UTF8:
        ds.decode()  # every text value to str, so all are written again in UTF-8
        if "SpecificCharacterSet" in ds:
            replaced.SpecificCharacterSet = ds.SpecificCharacterSet
        ds.SpecificCharacterSet = UTF8
    for keyword, value in changes.items():
        if keyword in ds:
            replaced[ds[keyword].tag] = deepcopy(ds[keyword])
        setattr(ds, keyword, value)
    item = Dataset()
    item.ModifiedAttributesSequence = [replaced]
    item.AttributeModificationDateTime = datetime.now().strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = modifying_system
    item.SourceOfPreviousValues = source
    item.ReasonForTheAttributeModification = "COERCE"
    ds.OriginalAttributesSequence = [*ds.get("OriginalAttributesSequence", []), item]
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    content = out.getvalue()
    (meta_length,) = struct.unpack("<I", content[140:144])
    incoming.replace_content(144 + meta_length, content)
    return sorted(changes)
