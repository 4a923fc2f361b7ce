"""Query/Retrieve as SCP for the Patient Root, Study Root and Patient/Study Only models:
C-FIND answered from the index, C-MOVE to configured destinations, C-GET on the
requestor's own association."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.jobs import JobHandler
from dicombox.core.net.commands import C_FIND_RQ, C_GET_RQ, C_MOVE_RQ
from dicombox.core.net.service import Service, SupportedContext
from dicombox.core.outbox import RouteJob
from dicombox.plugins.qr.find import FindSCP
from dicombox.plugins.qr.models import MODELS
from dicombox.plugins.qr.priors import FETCH_PRIORS, prior_fetch_jobs, run_fetch_priors
from dicombox.plugins.qr.retrieve import RetrieveSCP
from dicombox.plugins.qr.scu import add_verbs

__version__ = "0.1.0"
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


@dataclass(frozen=True)
class QRSection:
    """The query/retrieve plugin: C-FIND, C-MOVE and C-GET, and fetching priors."""

    max_matches: int = 0
    """Most C-FIND matches answered (`0` = no limit). Past it the final status is A700,
    "more than N matches; narrow the query"."""
    case_insensitive_names: bool = False
    """Match person names regardless of case (seed 001 and 002 do)."""
    priors_max: int = 3
    """A route's `fetch_priors` pulls at most this many earlier studies."""


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"qr": QRSection}


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings: QRSection = box.section("qr")
    find = FindSCP(box, settings.max_matches, settings.case_insensitive_names)
    retrieve = RetrieveSCP(box)
    return [
        Service(
            "qr-find",
            [SupportedContext(m.find, SYNTAXES) for m in MODELS],
            {C_FIND_RQ: find.handle},
            permissions={C_FIND_RQ: "query"},
            extended_negotiation=find_extended_negotiation,
        ),
        Service(
            "qr-move",
            [SupportedContext(m.move, SYNTAXES) for m in MODELS],
            {C_MOVE_RQ: retrieve.handle_move},
            permissions={C_MOVE_RQ: "move"},
        ),
        Service(
            "qr-get",
            [SupportedContext(m.get, SYNTAXES) for m in MODELS],
            {C_GET_RQ: retrieve.handle_get},
            permissions={C_GET_RQ: "get"},
        ),
    ]


def find_extended_negotiation(proposed: bytes) -> bytes:
    """C-FIND's extended negotiation (PS3.4 C.5.1.1): relational queries, combined
    date-time matching and case-insensitive ("fuzzy") person names are offered;
    timezone adjustment is not. The reply is as long as the proposal."""
    wanted = proposed.ljust(4, b"\x00")
    offered = bytes([wanted[0] & 1, wanted[1] & 1, wanted[2] & 1, 0])
    return offered[: max(1, min(len(proposed), 4))]


@hookimpl
def dicombox_route_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    return prior_fetch_jobs(box, instance, dataset)


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    settings: QRSection = box.section("qr")
    return {
        FETCH_PRIORS: lambda job, progress: run_fetch_priors(
            box, settings.priors_max, job, progress
        )
    }


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    add_verbs(subparsers)


def _scu_use(model: str, verb: str) -> str:
    """What the box itself asks other archives with, as SCU: the dicombox find, move and
    get verbs speak both root models; fetching priors, Study Root FIND and MOVE."""
    if model not in ("Patient Root", "Study Root"):
        return ""
    uses = [f"dicombox {verb.lower()}"]
    if model == "Study Root" and verb in ("FIND", "MOVE"):
        uses.append("fetch_priors")
    return "; SCU: " + ", ".join(uses)


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, object]]:
    return [
        {
            "service": "Query/Retrieve",
            "sop_class": f"{m.name} Query/Retrieve - {verb}",
            "uid": uid,
            # The SCU side (dicombox find/move/get, fetch_priors) speaks the two root models.
            "role": "SCP, SCU" if m.name in ("Patient Root", "Study Root") else "SCP",
            "transfer_syntaxes": [str(s) for s in SYNTAXES],
            "notes": f"levels {'/'.join(m.levels)}" + _scu_use(m.name, verb),
        }
        for m in MODELS
        for verb, uid in (("FIND", m.find), ("MOVE", m.move), ("GET", m.get))
    ]
