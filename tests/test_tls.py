"""DICOM TLS on its own port: DCMTK as TLS client, plain TCP refused cleanly, pinning,
the box's outgoing TLS, ``dicombox tls``, and the configuration rules."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import generate_uid
from pynetdicom.sop_class import CTImageStorage, Verification

from dicombox.core.config import ConfigError, parse_config
from dicombox.core.net.outbound import Proposal, RequestorAssociation
from dicombox.core.net.requestor import associate, resolve
from tests.conftest import require, sample_file
from tests.support.boxproc import run_cli
from tests.support.peers import free_port, run
from tests.support.synthetic import ct_dataset

EXPLICIT_LE = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        der = x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    client: Pair  # the pinned one
    stranger: Pair  # signed by the same CA, but not pinned


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    out: Path, cn: str, ca_key: ec.EllipticCurvePrivateKey | None, ca_name: x509.Name | None
) -> tuple[Pair, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_name or _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30 if ca_key else 365))
        .add_extension(x509.BasicConstraints(ca=ca_key is None, path_length=None), True)
    )
    if ca_key is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
    cert = builder.sign(ca_key or key, hashes.SHA256())
    pair = Pair(out / f"{cn}.crt", out / f"{cn}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return pair, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca, ca_key = _issue(out, "test-ca", None, None)
    issue = lambda cn: _issue(out, cn, ca_key, _name("test-ca"))[0]  # noqa: E731
    return Pki(ca.cert, issue("server"), issue("client"), issue("stranger"))


def _tls_config(pki: Pki, tls_port: int, own: Pair, pinned: list[str] | None = None) -> str:
    pins = ", ".join(f'"{p}"' for p in (pinned or []))
    return (
        "[network]\n"
        f"tls_port = {tls_port}\n"
        f'tls_certificate = "{own.cert}"\n'
        f'tls_key = "{own.key}"\n'
        f'tls_ca = "{pki.ca}"\n'
        "tls_require_client_cert = true\n"
        f"tls_pinned = [{pins}]\n"
    )


@pytest.fixture
def tls_box(make_box, pki: Pki):  # noqa: ANN001, ANN201
    port = free_port()
    box = make_box(_tls_config(pki, port, pki.server, [pki.client.fingerprint]))
    box.tls_port = port
    return box


def _tls_opts(pair: Pair, pki: Pki) -> list[str]:
    return ["+tls", str(pair.key), str(pair.cert), "+cf", str(pki.ca)]


def test_storescu_over_tls_stores(tls_box, pki: Pki) -> None:  # noqa: ANN001
    require("storescu")
    result = run(
        [
            "storescu",
            *_tls_opts(pki.client, pki),
            "-aec",
            "DICOMBOX",
            "127.0.0.1",
            tls_box.tls_port,
            sample_file("CT_small.dcm"),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CompressedSamples^CT1" in tls_box.cli("studies").stdout
    assert run_ready(tls_box)["tls_port"] == tls_box.tls_port
    assert f"TLS port {tls_box.tls_port}" in tls_box.output()


def run_ready(box) -> dict:  # noqa: ANN001
    import json

    return json.loads((box.data_dir / "run" / "ready.json").read_text())


def test_plain_tcp_to_tls_port_fails_cleanly(tls_box, pki: Pki) -> None:  # noqa: ANN001
    require("echoscu")
    plain = run(["echoscu", "-to", "5", "127.0.0.1", tls_box.tls_port], timeout=60)
    assert plain.returncode != 0
    # The worker logged it, audited a node authentication failure, and goes on serving
    # both ports.
    assert _logged(tls_box, "TLS handshake with 127.0.0.1:")
    assert _audited(tls_box, "security-tls-failed", "110126")
    # A client retrying is one alert per address and minute (per network worker), not one
    # per attempt.
    for _ in range(4):
        run(["echoscu", "-to", "5", "127.0.0.1", tls_box.tls_port], timeout=60)
    assert _logged(tls_box, "TLS handshake with 127.0.0.1:", count=5)
    records = (tls_box.data_dir / "audit" / "audit.jsonl").read_text().splitlines()
    alerts = [r for r in map(json.loads, records) if r["event"] == "security-tls-failed"]
    assert 1 <= len(alerts) <= tls_box.workers, alerts
    assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", tls_box.port]).returncode == 0
    tls = run(
        ["echoscu", "-aec", "DICOMBOX", *_tls_opts(pki.client, pki), "127.0.0.1", tls_box.tls_port]
    )
    assert tls.returncode == 0, tls.stdout + tls.stderr


def test_unpinned_client_certificate_is_refused(tls_box, pki: Pki) -> None:  # noqa: ANN001
    require("echoscu")
    refused = run(
        ["echoscu", "-to", "5", *_tls_opts(pki.stranger, pki), "127.0.0.1", tls_box.tls_port],
        timeout=60,
    )
    assert refused.returncode != 0
    assert _logged(tls_box, "not in network.tls_pinned")


def _audited(box, event: str, type_code: str, timeout: float = 15) -> bool:  # noqa: ANN001
    """A record of ``event`` whose PS3.15 message carries EventTypeCode ``type_code``."""
    path = box.data_dir / "audit" / "audit.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        if any(r["event"] == event and f'csd-code="{type_code}"' in r["dicom"] for r in records):
            return True
        time.sleep(0.1)
    return False


def _logged(box, text: str, timeout: float = 15, count: int = 1) -> bool:  # noqa: ANN001
    """The worker logs right after it closes the socket: give it a moment."""
    deadline = time.monotonic() + timeout
    while box.output().count(text) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_outgoing_tls_to_a_remote(tls_box, pki: Pki) -> None:  # noqa: ANN001
    remote = {
        "name": "tlsbox",
        "ae_title": "DICOMBOX",
        "host": "127.0.0.1",
        "port": tls_box.tls_port,
        "tls": True,
    }
    network = {
        "tls_certificate": str(pki.client.cert),
        "tls_key": str(pki.client.key),
        "tls_ca": str(pki.ca),
        "tls_pinned": [pki.server.fingerprint],  # pinning the server, from the client side
    }
    config = parse_config({"network": network, "remote": [remote]})
    # pynetdicom path (C-FIND/MOVE, MPPS, commitment)
    assoc = associate(config, config.remote[0], [Verification])
    assert assoc is not None
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    # the lean C-STORE path
    destination = resolve(config, "tlsbox")
    assert destination.tls
    proposals = [Proposal(CTImageStorage, (EXPLICIT_LE,))]
    with RequestorAssociation.open(destination, "TLSSCU", proposals, config.network) as out:
        assert out.accepted


def test_dicombox_echo_and_send_go_over_tls_to_a_tls_remote(
    make_box,
    tls_box,
    pki: Pki,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    require("storescu")
    sender = make_box(
        f'[network]\ntls_certificate = "{pki.client.cert}"\ntls_key = "{pki.client.key}"\n'
        f'tls_ca = "{pki.ca}"\n[[remote]]\nname = "secure"\nae_title = "DICOMBOX"\n'
        f'host = "127.0.0.1"\nport = {tls_box.tls_port}\ntls = true\n',
        name="sender",
    )
    echoed = sender.cli("echo", "secure")
    assert echoed.returncode == 0, echoed.stdout + echoed.stderr
    path, study = tmp_path / "ct.dcm", generate_uid()
    ct_dataset(study, generate_uid(), 1, rows=32, columns=32).save_as(
        path, enforce_file_format=True
    )
    sent = sender.cli("send", "secure", str(path))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert study in tls_box.cli("studies").stdout  # it arrived, over the TLS port


def test_tls_cli_selftest_and_selfsigned(tmp_path: Path) -> None:
    made = run_cli("tls", "selfsigned", "--out", str(tmp_path / "certs"), "--cn", "box1")
    assert made.returncode == 0, made.stdout + made.stderr
    config = tmp_path / "box.toml"
    config.write_text(
        "[network]\n"
        f"tls_port = {free_port()}\n"
        f'tls_certificate = "{tmp_path / "certs" / "box.crt"}"\n'
        f'tls_key = "{tmp_path / "certs" / "box.key"}"\n'
    )
    result = run_cli(
        "--config", str(config), "--data-dir", str(tmp_path / "var"), "tls", "selftest"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLSv1.3" in result.stdout or "TLSv1.2" in result.stdout
    assert "CN=box1" in result.stdout


def test_tls_config_errors(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match="needs network.tls_certificate and network.tls_key"):
        parse_config({"network": {"tls_port": 2762}})
    with pytest.raises(ConfigError, match="tls_certificate = .*no such file"):
        parse_config(
            {
                "network": {
                    "tls_port": 2762,
                    "tls_certificate": str(tmp_path / "missing.crt"),
                    "tls_key": str(pki.server.key),
                }
            }
        )
    with pytest.raises(ConfigError, match="tls_require_client_cert = true needs"):
        parse_config(
            {
                "network": {
                    "tls_port": 2762,
                    "tls_certificate": str(pki.server.cert),
                    "tls_key": str(pki.server.key),
                    "tls_require_client_cert": True,
                }
            }
        )
    with pytest.raises(ConfigError, match="tls_pinned\\[0\\]"):
        parse_config({"network": {"tls_pinned": ["abc"]}})
    with pytest.raises(ConfigError, match="remote\\[0\\].tls"):
        parse_config(
            {"remote": [{"name": "a", "ae_title": "A", "host": "h", "port": 1, "tls": "yes"}]}
        )
