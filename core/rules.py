"""[[route]] rules: does a stored instance meet a route's ``when``?

``when`` maps a key to a pattern. Keys are ``calling_ae``, ``sop_class`` or any DICOM
keyword (``Modality``, ``StationName`` …; ``modality`` in lower case works too).
Patterns take ``*`` and ``?`` wildcards and alternatives separated by ``|``
(``"CT|MR"``). Every key must match; an empty ``when`` matches everything. What a route
then does (forward, fetch priors, burn, print) is up to the plugin owning that action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicombox.core.header import value_of

log = logging.getLogger("dicombox.rules")

ALIASES = {"calling_ae": "", "sop_class": "SOPClassUID", "modality": "Modality"}


def key_problem(key: str) -> str:
    """Why ``key`` cannot be a ``when`` key, or ''."""
    if key in ALIASES or tag_for_keyword(key) is not None:
        return ""
    return f"{key!r} is neither calling_ae, sop_class nor a DICOM keyword"


def _text(value: Any) -> list[str]:
    if value is None:
        return [""]
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value] or [""]
    return [v.strip() for v in str(value).split("\\")]


def route_matches(when: dict[str, str], calling_ae: str, read: Callable[[str], Any]) -> bool:
    """``read(keyword)`` gives an attribute of the instance (None when absent)."""
    for key, pattern in when.items():
        keyword = ALIASES.get(key, key)
        values = [calling_ae] if key == "calling_ae" else _text(read(keyword))
        alternatives = pattern.split("|")
        if not any(fnmatchcase(v, alt) for v in values for alt in alternatives):
            return False
    return True


def instance_reader(path: Path, dataset: Any) -> Callable[[str], Any]:
    """Reads from the header the index kept, and from the stored file at ``path`` (its
    header, once) for anything else."""
    loaded: list[Any] = []

    def read(keyword: str) -> Any:
        if keyword in dataset:
            return value_of(dataset, keyword)
        if not loaded:
            loaded.append(dcmread(path, stop_before_pixels=True))
        return loaded[0].get(keyword)

    return read


def study_reader(index: Any, store: Any, study_uid: str) -> Callable[[str], Any] | None:
    """A reader for routes acting on a whole study (MPPS COMPLETED): the attributes of
    its first stored instance. None when the box holds none of the study."""
    instances = index.study_instances([study_uid])
    if not instances:
        return None
    return instance_reader(store.path(instances[0][1]), Dataset())


def routes_for_stored(routes: list[Any], calling_ae: str, path: Path, dataset: Any) -> list[Any]:
    """Those of ``routes`` acting as each instance is stored (``on = "stored"``) whose
    ``when`` the instance just stored at ``path`` matches."""
    routes = [r for r in routes if r.on == "stored"]
    if not routes:
        return []
    read = instance_reader(path, dataset)
    return [r for r in routes if route_matches(r.when, calling_ae, read)]


def routes_for_mpps_event(
    box: Any, event: Any, acts: Callable[[Any], bool]
) -> dict[str, list[Any]]:
    """For an ``mpps.completed`` event: each of its studies the box holds, with the
    routes that act on MPPS (``on = "mpps-completed"``) and ``acts(route)`` (those that
    forward, burn or print) whose ``when`` the sender and the study's first instance
    match."""
    routes = [r for r in box.config.route if r.on == "mpps-completed" and acts(r)]
    calling_ae = str(event.fields.get("calling_ae", ""))
    found: dict[str, list[Any]] = {}
    for uid in list(event.fields.get("study_instance_uids", [])) if routes else []:
        read = study_reader(box.index, box.store, uid)
        if read is None:
            log.warning("MPPS completed study %s, which the box does not hold", uid)
            continue
        matched = [r for r in routes if route_matches(r.when, calling_ae, read)]
        if matched:
            found[uid] = matched
    return found
