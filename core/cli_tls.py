"""``dicombox tls``: check the configured DICOM TLS certificate, or make a test one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dicombox.core.box import Box


def cmd_tls_selftest(box: Box, args: argparse.Namespace) -> int:
    """``dicombox tls selftest``: a TLS handshake with the box's own certificate."""
    import ssl

    from dicombox.core.net import tls

    net = box.config.network
    if not (net.tls_certificate and net.tls_key):
        print("dicombox tls selftest: set network.tls_certificate and network.tls_key first")
        return 1
    try:
        result = tls.selftest(net)
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"TLS self-test failed: {exc}")
        return 1
    print(f"protocol:    {result.protocol}")
    print(f"cipher:      {result.cipher}")
    print(f"subject:     {result.subject}")
    print(f"expires:     {result.not_after} ({result.days_left} days)")
    print(f"fingerprint: {result.fingerprint}  (SHA-256, for a peer's tls_pinned)")
    if result.days_left < 30:
        print(f"warning: the certificate expires in {result.days_left} days")
    print(f"TLS port:    {net.tls_port or 'off (network.tls_port = 0)'}")
    return 0


def tool_tls_selfsigned(args: argparse.Namespace) -> int:
    """``dicombox tls selfsigned``: a certificate and key for a first test."""
    from dicombox.core.net.tls import write_self_signed

    try:
        cert, key = write_self_signed(Path(args.out), args.cn, args.days)
    except OSError as exc:
        print(f"dicombox tls selfsigned: {exc}")
        return 1
    print(f"wrote {cert} and {key} (self-signed, for a first test only: use the site's CA)")
    print(f'[network]\ntls_certificate = "{cert}"\ntls_key = "{key}"')
    return 0


def add_tls_verbs(sub: argparse._SubParsersAction) -> None:
    """``dicombox tls selftest`` and ``dicombox tls selfsigned``."""
    p = sub.add_parser("tls", help="DICOM TLS: check the configured certificate, make a test one")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    a = actions.add_parser("selftest", help="TLS handshake with itself over loopback")
    a.set_defaults(func=cmd_tls_selftest)
    a = actions.add_parser("selfsigned", help="make a self-signed certificate and key")
    a.add_argument("--out", required=True, help="directory for box.crt and box.key")
    a.add_argument("--cn", default="dicombox", help="the certificate's common name")
    a.add_argument("--days", type=int, default=825)
    a.set_defaults(func=None, tool=tool_tls_selfsigned)
