"""DICOM over TLS (PS3.15 annex B, BCP 195 profile): the server and client contexts the
box builds from ``[network]``, peer-certificate pinning, and the checks behind
``dicombox tls selftest``."""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from dicombox.core.config import NetworkSection

log = logging.getLogger("dicombox.tls")

# BCP 195 for TLS 1.2: forward secrecy (ECDHE) with an AEAD cipher only; no CBC, no 3DES,
# no RC4. TLS 1.3 suites are all AEAD and not affected by this string.
BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!3DES:!RC4:!CBC"
HANDSHAKE_TIMEOUT_S = 10.0
_warned_unverified = threading.Event()


class PinRefused(ssl.SSLError):
    """The peer's certificate is valid TLS-wise but not one of ``tls_pinned``."""


def harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """BCP 195 on any context of the box's: TLS 1.2 or later, AEAD ciphers, no compression."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    return ctx


def server_context(net: NetworkSection) -> ssl.SSLContext:
    ctx = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(net.tls_certificate, net.tls_key)
    if net.tls_ca:
        ctx.load_verify_locations(net.tls_ca)
    if net.tls_require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif net.tls_pinned:
        # Pinning needs the client's certificate; ask for it, pinning then decides.
        ctx.verify_mode = ssl.CERT_OPTIONAL if net.tls_ca else ssl.CERT_NONE
    return ctx


def client_context(net: NetworkSection, warn: bool = True) -> ssl.SSLContext:
    ctx = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if net.tls_certificate and net.tls_key:  # for peers that want client authentication
        ctx.load_cert_chain(net.tls_certificate, net.tls_key)
    if net.tls_ca:
        ctx.load_verify_locations(net.tls_ca)
        # DICOM peers are known by AE title and address, rarely by a DNS name on the
        # certificate; the CA (and pinning) is what vouches for them.
        ctx.check_hostname = False
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if warn and not _warned_unverified.is_set():
            _warned_unverified.set()
            log.warning("outgoing TLS without network.tls_ca: peer certificates are not verified")
    return ctx


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def normalise_pin(pin: str) -> str:
    """``AB:CD:…`` or ``abcd…``: both are how tools print a SHA-256 fingerprint."""
    return pin.replace(":", "").replace(" ", "").lower()


def check_pin(tls_sock: ssl.SSLSocket, pinned: list[str]) -> None:
    if not pinned:
        return
    der = tls_sock.getpeercert(binary_form=True)
    if der is None:
        raise PinRefused("the peer sent no certificate, and network.tls_pinned is set")
    got = fingerprint(der)
    if got not in {normalise_pin(p) for p in pinned}:
        raise PinRefused(f"peer certificate {got} is not in network.tls_pinned")


def _peer(address: tuple) -> str:
    # A dual-stack listener sees IPv4 callers as ::ffff:a.b.c.d; log what the site knows.
    return f"{str(address[0]).removeprefix('::ffff:')}:{address[1]}"


class HandshakeFailed(Exception):
    """A client on the TLS port that did not authenticate; its socket is closed."""


def accept_tls(
    conn: socket.socket, address: tuple, ctx: ssl.SSLContext, net: NetworkSection
) -> ssl.SSLSocket:
    """The server side of the handshake, on the association's own thread. Raises
    HandshakeFailed (socket closed, warning logged) when it fails, so a bad client never
    stops the worker and the caller can audit it."""
    conn.settimeout(HANDSHAKE_TIMEOUT_S)  # a silent client must not hold the thread
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError) as exc:
        log.warning("TLS handshake with %s failed: %s", _peer(address), exc)
        conn.close()
        raise HandshakeFailed(f"TLS handshake failed: {exc}") from None
    try:
        check_pin(tls, net.tls_pinned)
    except PinRefused as exc:
        log.warning("TLS peer %s refused: %s", _peer(address), exc)
        tls.close()
        raise HandshakeFailed(f"TLS peer refused: {exc}") from None
    tls.settimeout(None)
    return tls


def connect_tls(sock: socket.socket, net: NetworkSection, host: str) -> ssl.SSLSocket:
    """The client side over an open TCP socket, with pinning; raises on failure."""
    tls = client_context(net).wrap_socket(sock, server_hostname=host)
    try:
        check_pin(tls, net.tls_pinned)
    except PinRefused:
        tls.close()
        raise
    return tls


@dataclass(frozen=True)
class SelfTest:
    protocol: str
    cipher: str
    subject: str
    not_after: str
    days_left: int
    fingerprint: str


def selftest(net: NetworkSection) -> SelfTest:
    """Handshake the box's server context against its client context over loopback,
    in-process: proves certificate, key and settings go together before a peer tries."""
    server_ctx = server_context(net)
    client_ctx = client_context(net, warn=False)
    # Against itself, the box's own certificate must be acceptable to the client side.
    client_ctx.verify_mode = ssl.CERT_NONE
    listener = socket.create_server(("127.0.0.1", 0))
    failure: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        raw = socket.create_connection(listener.getsockname(), HANDSHAKE_TIMEOUT_S)
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            protocol = tls.version() or "?"
            cipher = tls.cipher()[0] if tls.cipher() else "?"
            der = tls.getpeercert(binary_form=True) or b""
            tls.sendall(b"x")
    finally:
        thread.join(HANDSHAKE_TIMEOUT_S)
        listener.close()
    if failure:
        raise failure[0]
    return _describe(der, protocol, cipher)


def _describe(der: bytes, protocol: str, cipher: str) -> SelfTest:
    import datetime

    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    expiry = cert.not_valid_after_utc
    days = (expiry - datetime.datetime.now(datetime.UTC)).days
    return SelfTest(
        protocol, cipher, cert.subject.rfc4514_string(), expiry.isoformat(), days, fingerprint(der)
    )


def write_self_signed(out: Path, common_name: str, days: int = 825) -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM) in ``out``: enough to try TLS; a
    hospital uses certificates from its own CA instead."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / "box.crt", out / "box.key"
    key_path.touch(mode=0o600)  # private from the first byte
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
