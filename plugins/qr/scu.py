"""The box as query/retrieve user: ``dicombox find``, ``dicombox move`` and ``dicombox get``
against a remote archive. What ``get`` retrieves is taken into the box's own store."""

from __future__ import annotations

import argparse
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.presentation import StoragePresentationContexts, build_role

from dicombox.core.box import Box
from dicombox.core.ingest import Arrival, Ingest
from dicombox.core.net.requestor import (
    Destination,
    UnknownDestination,
    requestor_ae,
    resolve,
    tls_args_for,
)
from dicombox.plugins.qr.models import PATIENT_ROOT, STUDY_ROOT, Model

MODEL_BY_NAME = {"study": STUDY_ROOT, "patient": PATIENT_ROOT}


def identifier(level: str, keys: list[str]) -> Dataset:
    """A query identifier from ``KEY=VALUE`` (or bare ``KEY`` to have it returned)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    for key in keys:
        keyword, _, value = key.partition("=")
        try:
            setattr(ds, keyword, value)
        except (AttributeError, ValueError) as exc:
            raise SystemExit(f"dicombox: -k {key!r}: {exc}") from None
    return ds


def _destination(box: Box, args: argparse.Namespace) -> Destination:
    try:
        return resolve(box.config, args.remote, None)
    except UnknownDestination as exc:
        raise SystemExit(f"dicombox {args.verb}: {exc}") from None


def _associate(
    box: Box,
    args: argparse.Namespace,
    contexts: list[str],
    roles: list[Any] | None = None,
    handlers: list[Any] | None = None,
) -> Any:
    dest = _destination(box, args)
    ae = requestor_ae(box.config)
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate(
        dest.host,
        dest.port,
        ae_title=dest.ae_title,
        ext_neg=roles,
        evt_handlers=handlers,
        tls_args=tls_args_for(box.config.network, dest),
    )
    if not assoc.is_established:
        raise SystemExit(f"dicombox {args.verb}: could not associate with {dest}")
    return assoc, dest


def find_command(box: Box, args: argparse.Namespace) -> int:
    model: Model = MODEL_BY_NAME[args.model]
    query = identifier(args.level, args.key)
    assoc, dest = _associate(box, args, [model.find])
    shown = [e.keyword for e in query if e.keyword != "QueryRetrieveLevel"]
    count, final = 0, None
    try:
        for status, answer in assoc.send_c_find(query, model.find):
            code = getattr(status, "Status", None)
            if code in (0xFF00, 0xFF01) and answer is not None:
                count += 1
                print("  ".join(f"{k}={answer.get(k, '')}" for k in shown))
            else:
                final = code
    finally:
        assoc.release()
    print(
        f"{count} match(es) from {dest}; final status "
        f"{'none' if final is None else f'0x{final:04X}'}"
    )
    return 0 if final == 0 else 1


def move_command(box: Box, args: argparse.Namespace) -> int:
    model: Model = MODEL_BY_NAME[args.model]
    query = identifier(args.level, args.key)
    assoc, dest = _associate(box, args, [model.move])
    last: Any = None
    try:
        for status, _answer in assoc.send_c_move(query, args.destination, model.move):
            last = status
    finally:
        assoc.release()
    return _report(f"move from {dest} to {args.destination}", last)


def get_command(box: Box, args: argparse.Namespace) -> int:
    model: Model = MODEL_BY_NAME[args.model]
    query = identifier(args.level, args.key)
    ingest = Ingest(box)
    source_ae = _destination(box, args).ae_title

    def on_store(event: Any) -> int:
        arrival = Arrival(
            transfer_syntax=str(event.context.transfer_syntax),
            source_ae=source_ae,
            sop_class_uid=str(event.request.AffectedSOPClassUID),
            sop_instance_uid=str(event.request.AffectedSOPInstanceUID),
        )
        sink = ingest.open(arrival)
        data = event.request.DataSet
        raw = data.getvalue() if isinstance(data, BytesIO) else bytes(data or b"")
        sink.write(raw)
        sink.close()
        return ingest.finish(sink, arrival).status

    contexts = [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
    roles = [build_role(uid, scp_role=True) for uid in contexts]
    assoc, dest = _associate(
        box, args, [model.get, *contexts[:127]], roles[:127], [(evt.EVT_C_STORE, on_store)]
    )
    last: Any = None
    try:
        for status, _answer in assoc.send_c_get(query, model.get):
            last = status
    finally:
        assoc.release()
    return _report(f"get from {dest} into this box", last)


def _report(what: str, status: Any) -> int:
    if status is None:
        print(f"{what}: no answer")
        return 1
    counts = {
        k: status.get(f"NumberOf{k}Suboperations", 0) for k in ("Completed", "Failed", "Warning")
    }
    print(
        f"{what}: status 0x{status.Status:04X}, {counts['Completed']} completed, "
        f"{counts['Failed']} failed, {counts['Warning']} warning"
    )
    return 0 if status.Status == 0 else 1


def add_verbs(subparsers: argparse._SubParsersAction) -> None:
    for verb, func, helptext in (
        ("find", find_command, "C-FIND a [[remote]]: -k KEY=VALUE, bare -k KEY to return it"),
        ("move", move_command, "C-MOVE from a [[remote]] to DESTINATION (an AE title)"),
        ("get", get_command, "C-GET from a [[remote]] into this box's store"),
    ):
        p = subparsers.add_parser(verb, help=helptext)
        p.add_argument("remote", help="a [[remote]] name")
        if verb == "move":
            p.add_argument("destination", help="the move destination's AE title")
        p.add_argument("-k", "--key", action="append", default=[], metavar="KEY[=VALUE]")
        p.add_argument("--level", default="STUDY", choices=["PATIENT", "STUDY", "SERIES", "IMAGE"])
        p.add_argument("--model", default="study", choices=sorted(MODEL_BY_NAME))
        p.set_defaults(func=func)
