"""Verification: C-ECHO as SCP on every local AE title, and ``dicombox echo`` as SCU."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import Verification

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.net.commands import C_ECHO_RQ
from dicombox.core.net.requestor import (
    UnknownDestination,
    requestor_ae,
    resolve,
    tls_args_for,
)
from dicombox.core.net.service import Reply, Request, Service, SupportedContext

__version__ = "1.0.0"
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def _echo(request: Request) -> Iterator[Reply]:
    yield Reply(0x0000)


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    return [
        Service(
            name="verification",
            contexts=[SupportedContext(Verification, SYNTAXES)],
            handlers={C_ECHO_RQ: _echo},
            ae_titles=tuple(box.local_ae_titles()),
        )
    ]


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, object]]:
    return [
        {
            "service": "Verification",
            "sop_class": "Verification",
            "uid": str(Verification),
            "role": "SCP, SCU",
            "transfer_syntaxes": [str(s) for s in SYNTAXES],
            "notes": "SCP on every local AE title; SCU: dicombox echo",
        }
    ]


def echo_command(box: Box, args: argparse.Namespace) -> int:
    try:
        dest = resolve(box.config, args.target, args.port, args.aec)
    except UnknownDestination as exc:
        print(f"dicombox echo: {exc}")
        return 2
    ae = requestor_ae(box.config, args.aet)
    ae.add_requested_context(Verification)
    tls = tls_args_for(box.config.network, dest)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "could not associate"
        print(f"echo {dest}: FAILED ({why})")
        return 1
    status = assoc.send_c_echo()
    assoc.release()
    code = getattr(status, "Status", None)
    if code == 0x0000:
        print(f"echo {dest}: OK")
        return 0
    print(f"echo {dest}: FAILED (status {code if code is None else hex(code)})")
    return 1


@hookimpl
def dicombox_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("echo", help="C-ECHO a peer: a [[remote]] name, or HOST PORT")
    p.add_argument("target", help="a [[remote]] name, or a host name")
    p.add_argument("port", nargs="?", type=int, help="port, when target is a host")
    p.add_argument("--aec", default="ANY-SCP", help="called AE title for HOST PORT (ANY-SCP)")
    p.add_argument("--aet", help="our calling AE title (default: [box] ae_title)")
    p.set_defaults(func=echo_command)
