"""Storage: the C-STORE SCP that keeps what modalities send, the forwarding SCU that
passes it on by [[route]] rules (transcoding for peers that need it), ``dicombox send``,
and the watermark policy that makes room by deleting what the archive has committed.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.jobs import JobHandler
from dicombox.core.net.commands import C_STORE_RQ
from dicombox.core.net.service import Service, SupportedContext
from dicombox.core.outbox import RouteJob
from dicombox.plugins.storage.forward import (
    FORWARD,
    forward_completed_study,
    forward_jobs,
    run_forward,
)
from dicombox.plugins.storage.scp import StorageSCP
from dicombox.plugins.storage.send import add_verb
from dicombox.plugins.storage.sop_classes import (
    STORAGE_CLASSES,
    is_storage_class,
    transfer_syntax_order,
)
from dicombox.plugins.storage.watermark import enforce, start_watch

__version__ = "1.0.0"


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings = box.config.storage
    syntaxes = transfer_syntax_order(settings.transfer_syntax_order)
    scp = StorageSCP(box)
    return [
        Service(
            name="storage",
            # Both roles: a C-GET requestor opens these contexts to be the SCP itself, and the
            # box then sends its sub-operations on them.
            contexts=[
                SupportedContext(uid, syntaxes, scu_role=True, scp_role=True)
                for uid in STORAGE_CLASSES
            ],
            handlers={C_STORE_RQ: scp.handle},
            permissions={C_STORE_RQ: "store"},
            sinks={C_STORE_RQ: scp.open_sink},
            accepts_unknown=is_storage_class if settings.accept_unknown_classes else None,
            fallback_transfer_syntaxes=syntaxes,
        )
    ]


@hookimpl
def dicombox_route_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    return forward_jobs(box, instance, dataset)


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    return {FORWARD: lambda job, progress: run_forward(box, job, progress)}


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    add_verb(subparsers)
    p = subparsers.add_parser(
        "watermark", help="apply the watermark policy now: delete committed instances"
    )
    p.set_defaults(func=lambda box, args: print(f"deleted {enforce(box)} instances") or 0)


@hookimpl
def dicombox_start(box: Box) -> None:
    start_watch(box)
    box.bus.subscribe("mpps.completed", lambda event: forward_completed_study(box, event))


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, object]]:
    from pydicom.uid import UID

    syntaxes = [str(s) for s in transfer_syntax_order(box.config.storage.transfer_syntax_order)]
    return [
        {
            "service": "Storage",
            "sop_class": UID(uid).name
            if uid != "1.3.12.2.1107.5.9.1"
            else "Siemens CSA Non-Image Storage",
            "uid": uid,
            "role": "SCP",
            "transfer_syntaxes": syntaxes,
            "notes": "",
        }
        for uid in STORAGE_CLASSES
    ] + [
        {
            "service": "Storage",
            "sop_class": "every storage class",
            "uid": "",
            "role": "SCU",
            "transfer_syntaxes": ["as stored", "or per the remote's transfer_syntaxes"],
            "notes": "forwarding, dicombox send, C-MOVE and C-GET sub-operations; converted "
            "where the remote needs it to a native syntax, RLE, JPEG 2000 lossless or "
            "JPEG-LS lossless, and to JPEG 2000 or near-lossless JPEG-LS only with allow_lossy",
        }
    ]


@hookimpl
def dicombox_status(box: Box) -> list[str]:
    totals = box.index.totals()
    used = 1 - box.store.free_bytes() / max(1, _capacity(box))
    return [
        f"stored: {totals['studies']} studies, {totals['instances']} instances",
        f"disk: {used:.0%} used, {box.store.free_bytes() >> 20} MB free",
    ]


def _capacity(box: Box) -> int:
    st = os.statvfs(box.store.root)
    return st.f_blocks * st.f_frsize
