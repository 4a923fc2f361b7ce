"""The audit trail as DICOM PS3.15 audit messages, against a running box and DCMTK peers:
a store, a query, a C-GET, the application's start and stop, security alerts; syslog
over UDP and TLS read by real receivers, a collector that is down; ``dicombox audit``."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import queue
import re
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import CTImageStorage, generate_uid

from dicombox.core.config import ConfigError, parse_config
from dicombox.core.net.dataset_codec import decode_dataset
from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import ct_dataset

PATIENT, PATIENT_ID = "AUDIT^ALICE", "AUD1"
FRAME = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - \xef\xbb\xbf(.*)$", re.DOTALL)


# ----------------------------------------------------------------------------- helpers
def write_study(directory: Path, count: int, patient: str = PATIENT, pid: str = PATIENT_ID) -> str:
    """``count`` small CT images of one new study; its Study Instance UID."""
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    for n in range(1, count + 1):
        ds = ct_dataset(study, series, n, rows=16, columns=16, patient=patient, patient_id=pid)
        ds.save_as(directory / f"ct{n}.dcm", enforce_file_format=True)
    return study


def records(box: RunningBox) -> list[dict[str, Any]]:
    path = box.data_dir / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(
    box: RunningBox, test: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 15
) -> list[dict[str, Any]]:
    """The records passing ``test``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(box) if test(r)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} matching records of {count}: {records(box)}"
            return found
        time.sleep(0.1)


def event(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["event"] == name and all(r.get(k) == v for k, v in fields.items())


def code(element: ET.Element | None, tag: str) -> str:
    assert element is not None
    found = element.find(tag)
    assert found is not None, f"no {tag} in {ET.tostring(element, encoding='unicode')}"
    return found.attrib["csd-code"]


def participant(message: ET.Element, user_id: str) -> ET.Element:
    for element in message.findall("ActiveParticipant"):
        if element.attrib["UserID"] == user_id:
            return element
    raise AssertionError(f"no participant {user_id}: {ET.tostring(message, encoding='unicode')}")


def objects(message: ET.Element, id_type: str) -> list[ET.Element]:
    return [
        o
        for o in message.findall("ParticipantObjectIdentification")
        if code(o, "ParticipantObjectIDTypeCode") == id_type
    ]


def xml_of(record: dict[str, Any]) -> ET.Element:
    message = ET.fromstring(record["dicom"])
    assert message.tag == "AuditMessage"
    return message


# ------------------------------------------------------------------------ the messages
def test_a_stored_study_is_one_instances_transferred_message(make_box, tmp_path: Path) -> None:
    require("storescu")
    box = make_box()
    study = write_study(tmp_path / "study", 3)
    files = sorted((tmp_path / "study").iterdir())
    assert storescu(box.port, files, aet="MODALITY1").returncode == 0

    (record,) = wait_for(box, event("instances-transferred", calling_ae="MODALITY1"))
    assert len([r for r in records(box) if r["event"] == "instance-stored"]) == 3
    assert record["studies"] == [study] and record["patient_id"] == PATIENT_ID
    assert record["count"] == 3 and record["outcome"] == 0
    message = xml_of(record)
    identification = message.find("EventIdentification")
    assert identification is not None and code(identification, "EventID") == "110104"
    assert identification.attrib["EventActionCode"] == "C"
    assert identification.attrib["EventOutcomeIndicator"] == "0"
    modality = participant(message, "MODALITY1")
    assert modality.attrib["UserIsRequestor"] == "true"
    assert modality.attrib["NetworkAccessPointID"] == "127.0.0.1"
    assert code(modality, "RoleIDCode") == "110153"
    assert code(participant(message, "DICOMBOX"), "RoleIDCode") == "110152"
    (study_object,) = objects(message, "110180")
    assert study_object.attrib["ParticipantObjectID"] == study
    sop_class = study_object.find("ParticipantObjectDescription/SOPClass")
    assert sop_class is not None
    assert sop_class.attrib == {"UID": CTImageStorage, "NumberOfInstances": "3"}
    (patient,) = objects(message, "2")
    assert patient.attrib["ParticipantObjectID"] == PATIENT_ID
    assert patient.attrib["ParticipantObjectTypeCode"] == "1"
    assert patient.attrib["ParticipantObjectTypeCodeRole"] == "1"
    assert patient.findtext("ParticipantObjectName") == PATIENT

    # The same image again: the box holds it already and keeps its copy, a Read (R).
    assert storescu(box.port, files[:1], aet="MODALITY2").returncode == 0
    (again,) = wait_for(box, event("instances-transferred", calling_ae="MODALITY2"))
    identification = xml_of(again).find("EventIdentification")
    assert identification is not None and identification.attrib["EventActionCode"] == "R"
    assert again["count"] == 1


def test_a_find_is_a_query_message_holding_the_identifier(make_box, tmp_path: Path) -> None:
    require("findscu")
    box = make_box()
    result = run(
        [
            "findscu", "-S", "-aet", "FINDER", "-aec", "DICOMBOX",
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={PATIENT_ID}",
            "-k", "StudyInstanceUID", "127.0.0.1", box.port,
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (record,) = wait_for(box, event("query", calling_ae="FINDER"))
    message = xml_of(record)
    assert code(message.find("EventIdentification"), "EventID") == "110112"
    finder = participant(message, "FINDER")
    assert finder.attrib["UserIsRequestor"] == "true" and code(finder, "RoleIDCode") == "110153"
    (query,) = objects(message, "110181")
    assert query.attrib["ParticipantObjectID"] == "1.2.840.10008.5.1.4.1.2.2.1"  # study root
    detail = query.find("ParticipantObjectDetail")
    assert detail is not None and detail.attrib["type"] == "TransferSyntax"
    syntax = base64.b64decode(detail.attrib["value"]).decode()
    identifier = decode_dataset(
        base64.b64decode(query.findtext("ParticipantObjectQuery", "")), syntax
    )
    assert identifier.PatientID == PATIENT_ID and identifier.QueryRetrieveLevel == "STUDY"


def test_a_get_begins_and_completes_a_transfer(make_box, tmp_path: Path) -> None:
    require("storescu", "getscu")
    box = make_box()
    study = write_study(tmp_path / "study", 2, patient="AUDIT^BOB", pid="AUD2")
    assert storescu(box.port, sorted((tmp_path / "study").iterdir())).returncode == 0
    out = tmp_path / "got"
    out.mkdir()
    result = run(
        [
            "getscu", "-S", "-aet", "GETTER", "-aec", "DICOMBOX", "-od", out,
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", box.port,
        ]
    )  # fmt: skip
    assert result.returncode == 0 and len(list(out.iterdir())) == 2, result.stderr
    (begin,) = wait_for(box, event("retrieve-begin", calling_ae="GETTER"))
    (done,) = wait_for(box, event("retrieve", calling_ae="GETTER"))
    assert code(xml_of(begin).find("EventIdentification"), "EventID") == "110102"
    message = xml_of(done)
    identification = message.find("EventIdentification")
    assert identification is not None and code(identification, "EventID") == "110104"
    assert identification.attrib["EventActionCode"] == "R" and done["outcome"] == 0
    getter = participant(message, "GETTER")
    assert code(getter, "RoleIDCode") == "110152" and getter.attrib["UserIsRequestor"] == "true"
    assert code(participant(message, "DICOMBOX"), "RoleIDCode") == "110153"
    (study_object,) = objects(message, "110180")
    assert study_object.attrib["ParticipantObjectID"] == study
    assert [p.findtext("ParticipantObjectName") for p in objects(message, "2")] == ["AUDIT^BOB"]


def test_a_forward_begins_and_completes_a_transfer(make_box, tmp_path: Path) -> None:
    require("storescu", "storescp")
    port, received = free_port(), tmp_path / "archive"
    received.mkdir()
    archive = popen(["storescp", "-aet", "ARCHIVE", "-od", received, str(port)])
    try:
        box = make_box(
            f'[[remote]]\nname = "archive"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\n'
            f"port = {port}\n\n[storage]\nforward_delay_s = 0.2\n\n"
            '[[route]]\nwhen = {}\nforward = ["archive"]\n'
        )
        study = write_study(tmp_path / "study", 2)
        assert storescu(box.port, sorted((tmp_path / "study").iterdir())).returncode == 0
        (begin,) = wait_for(box, event("forward-begin", remote="archive"))
        (done,) = wait_for(box, event("instances-forwarded", remote="archive"))
    finally:
        archive.terminate()
        archive.wait()
    assert len(list(received.iterdir())) == 2
    assert code(xml_of(begin).find("EventIdentification"), "EventID") == "110102"
    message = xml_of(done)
    identification = message.find("EventIdentification")
    assert identification is not None and code(identification, "EventID") == "110104"
    assert identification.attrib["EventActionCode"] == "R"
    destination = participant(message, "ARCHIVE")
    assert code(destination, "RoleIDCode") == "110152"
    assert destination.attrib["NetworkAccessPointID"] == "127.0.0.1"
    source = participant(message, "DICOMBOX")
    assert code(source, "RoleIDCode") == "110153" and source.attrib["UserIsRequestor"] == "true"
    (study_object,) = objects(message, "110180")
    assert study_object.attrib["ParticipantObjectID"] == study
    assert done["patient_name"] == PATIENT and done["count"] == 2


def test_a_printed_study_is_an_export_naming_its_patient(make_box, tmp_path: Path) -> None:
    require("storescu")
    box = make_box()  # the default printer makes PDF files
    study = write_study(tmp_path / "study", 2)
    assert storescu(box.port, sorted((tmp_path / "study").iterdir())).returncode == 0
    printed = box.cli("print", study, "--layout", "1x1")
    assert printed.returncode == 0, printed.stdout + printed.stderr
    box.wait_job("print", state="done")

    (record,) = wait_for(box, event("print"))
    assert record["studies"] == [study] and record["patient_id"] == PATIENT_ID
    message = xml_of(record)
    identification = message.find("EventIdentification")
    assert identification is not None and code(identification, "EventID") == "110106"
    assert identification.attrib["EventOutcomeIndicator"] == "0"
    (study_object,) = objects(message, "110180")
    assert study_object.attrib["ParticipantObjectID"] == study
    (patient,) = objects(message, "2")
    assert patient.findtext("ParticipantObjectName") == PATIENT
    printer = next(
        p for p in message.findall("ActiveParticipant") if p.attrib["UserIsRequestor"] == "false"
    )
    assert code(printer, "RoleIDCode") == "110154"  # Destination Media
    assert code(printer.find("MediaIdentifier"), "MediaType") == "110010"  # Film


def test_application_start_and_stop_are_recorded(make_box) -> None:
    box = make_box()
    assert box.stop() == 0
    kinds = [r for r in records(box) if r["event"].startswith("application-")]
    assert [r["event"] for r in kinds] == ["application-start", "application-stop"]
    for record, type_code in zip(kinds, ("110120", "110121"), strict=True):
        message = xml_of(record)
        identification = message.find("EventIdentification")
        assert code(identification, "EventID") == "110100"
        assert code(identification, "EventTypeCode") == type_code
        assert code(participant(message, "DICOMBOX"), "RoleIDCode") == "110150"
        roles = [code(p, "RoleIDCode") for p in message.findall("ActiveParticipant")]
        assert "110151" in roles  # who started it: the Application Launcher


def test_refusals_are_security_alerts(make_box) -> None:
    require("echoscu", "findscu")
    box = make_box(
        "[network]\naccept_unknown_callers = false\n\n"
        '[[remote]]\nname = "modality"\nae_title = "MODALITY"\nhost = "127.0.0.1"\n'
        f'port = {free_port()}\nservices = ["store"]\n'
    )
    assert run(
        ["echoscu", "-aet", "STRANGER", "-aec", "DICOMBOX", "127.0.0.1", box.port]
    ).returncode
    (rejected,) = wait_for(box, event("association-rejected", calling_ae="STRANGER"))
    message = xml_of(rejected)
    identification = message.find("EventIdentification")
    assert code(identification, "EventID") == "110113"
    assert code(identification, "EventTypeCode") == "110126"  # Node Authentication
    assert rejected["outcome"] == 4
    assert participant(message, "STRANGER").attrib["UserIsRequestor"] == "true"

    # A known caller asking for what its [[remote]] does not allow (a query).
    run(["findscu", "-S", "-aet", "MODALITY", "-aec", "DICOMBOX", "-k",
         "QueryRetrieveLevel=STUDY", "127.0.0.1", box.port])  # fmt: skip
    (refused,) = wait_for(box, event("security-refused", calling_ae="MODALITY"))
    message = xml_of(refused)
    identification = message.find("EventIdentification")
    assert code(identification, "EventID") == "110113"
    assert code(identification, "EventTypeCode") == "110132"  # Use of Restricted Function
    assert identification.attrib["EventOutcomeIndicator"] == "4"
    assert [o.attrib["ParticipantObjectID"] for o in objects(message, "Permission")] == ["query"]
    assert not [r for r in records(box) if r["event"] == "query"]  # it never got to run


# ---------------------------------------------------------------------------- syslog
def parse_frame(data: bytes) -> dict[str, Any]:
    match = FRAME.match(data)
    assert match, data[:200]
    pri, stamp, host, app, procid, msgid, body = match.groups()
    return {
        "pri": int(pri),
        "time": datetime.datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")),
        "host": host.decode(),
        "app": app.decode(),
        "procid": int(procid),
        "msgid": msgid.decode(),
        "xml": ET.fromstring(body.decode("utf-8")),
    }


def event_id(frame: dict[str, Any]) -> str:
    return code(frame["xml"].find("EventIdentification"), "EventID")


def collect(frames: queue.Queue[bytes], wanted: Callable[[dict[str, Any]], bool]) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            parsed = parse_frame(frames.get(timeout=0.5))
        except queue.Empty:
            continue
        if wanted(parsed):
            return parsed
    raise AssertionError("no such syslog frame arrived")


@pytest.fixture
def udp_collector() -> Iterator[tuple[int, queue.Queue[bytes]]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    frames: queue.Queue[bytes] = queue.Queue()

    def receive() -> None:
        while True:
            try:
                frames.put(sock.recv(65535))
            except OSError:
                return

    threading.Thread(target=receive, daemon=True).start()
    yield sock.getsockname()[1], frames
    sock.close()


def test_udp_syslog_gets_rfc5424_frames(make_box, udp_collector, tmp_path: Path) -> None:
    require("storescu", "echoscu")
    port, frames = udp_collector
    box = make_box(
        f'[audit]\nsyslog = "udp://127.0.0.1:{port}"\n\n[network]\naccept_unknown_callers = false\n'
    )
    start = collect(frames, lambda f: event_id(f) == "110100")
    assert start["pri"] == 85  # facility 10 (authpriv), severity 5 (notice)
    assert (start["app"], start["msgid"]) == ("dicombox", "IHE+RFC-3881")
    assert start["host"] == socket.gethostname() and start["procid"] == box.proc.pid
    age = datetime.datetime.now(datetime.UTC) - start["time"]
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)

    run(["echoscu", "-aet", "INTRUDER", "-aec", "DICOMBOX", "127.0.0.1", box.port])
    alert = collect(frames, lambda f: event_id(f) == "110113")
    assert alert["pri"] == 84  # a failure: severity 4 (warning)
    assert participant(alert["xml"], "INTRUDER").attrib["UserIsRequestor"] == "true"


def test_a_message_too_big_for_udp_is_dropped_and_the_rest_go(make_box, udp_collector) -> None:
    require("findscu", "echoscu")
    port, frames = udp_collector
    box = make_box(f'[audit]\nsyslog = "udp://127.0.0.1:{port}"\n')
    collect(frames, lambda f: event_id(f) == "110100")
    # A query's identifier travels in its message: 70 kB of it cannot fit a datagram.
    huge = run(
        ["findscu", "-S", "-aec", "DICOMBOX", "-k", "QueryRetrieveLevel=STUDY",
         "-k", "PatientName=" + "A" * 70000, "127.0.0.1", box.port]
    )  # fmt: skip
    assert huge.returncode == 0, huge.stdout + huge.stderr
    run(["echoscu", "-aet", "INTRUDER2", "-aec", "NOTUS", "127.0.0.1", box.port])
    alert = collect(frames, lambda f: event_id(f) == "110113")  # the next one still came
    participant(alert["xml"], "INTRUDER2")  # raises when it is not this one
    assert "too big for UDP; dropped" in box.output()
    assert [r for r in records(box) if r["event"] == "query"]  # the local trail has it


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a collector certificate it signed, for 127.0.0.1."""
    out = tmp_path_factory.mktemp("audit-pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": out / "ca.pem", "cert": out / "collector.pem", "key": out / "collector.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def read_octet_counted(stream: ssl.SSLSocket, frames: queue.Queue[bytes]) -> None:
    """RFC 5425: ``MSG-LEN SP SYSLOG-MSG``, one after another on the stream."""
    buffer = b""
    while True:
        try:
            chunk = stream.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b" " in buffer:
            length, rest = buffer.split(b" ", 1)
            assert length.isdigit(), buffer[:40]
            if len(rest) < int(length):
                break
            frames.put(rest[: int(length)])
            buffer = rest[int(length) :]


def test_tls_syslog_gets_octet_counted_frames(make_box, pki, tmp_path: Path) -> None:
    require("storescu")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    frames: queue.Queue[bytes] = queue.Queue()

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                stream = context.wrap_socket(raw, server_side=True)
            except OSError:
                if listener.fileno() < 0:
                    return
                continue
            threading.Thread(target=read_octet_counted, args=(stream, frames), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        box = make_box(
            f'[audit]\nsyslog = "tls://127.0.0.1:{listener.getsockname()[1]}"\n'
            f'syslog_ca = "{pki["ca"]}"\nsyslog_msgid = "IHE+DICOM"\nsyslog_app_name = "pacsbox"\n'
        )
        start = collect(frames, lambda f: event_id(f) == "110100")
        assert (start["app"], start["msgid"], start["pri"]) == ("pacsbox", "IHE+DICOM", 85)
        study = write_study(tmp_path / "study", 2)
        assert storescu(box.port, sorted((tmp_path / "study").iterdir())).returncode == 0
        stored = collect(frames, lambda f: event_id(f) == "110104")
        (study_object,) = objects(stored["xml"], "110180")
        assert study_object.attrib["ParticipantObjectID"] == study
        box.stop()
        collect(frames, lambda f: code(f["xml"].find("EventIdentification"), "EventTypeCode")
                == "110121")  # fmt: skip
    finally:
        listener.close()


def test_a_collector_that_is_down_stops_nothing(make_box, tmp_path: Path) -> None:
    require("storescu")
    box = make_box(f'[audit]\nsyslog = "tls://127.0.0.1:{free_port()}"\n')  # nobody listens
    for n in range(3):
        write_study(tmp_path / f"study{n}", 2)
        started = time.monotonic()
        result = storescu(box.port, sorted((tmp_path / f"study{n}").iterdir()), aet=f"MOD{n}")
        assert result.returncode == 0 and time.monotonic() - started < 10, result.stderr
    wait_for(box, lambda r: r["event"] == "instances-transferred", count=3)
    assert box.stop() == 0
    assert [r["event"] for r in records(box)][-1] == "application-stop"
    # Said once per process (the supervisor and its two workers), not once per message.
    assert 1 <= box.output().count("unreachable") <= 3, box.output()


# ------------------------------------------------------------------ dicombox audit
def test_dicombox_audit_reads_the_trail(make_box, tmp_path: Path) -> None:
    require("storescu")
    box = make_box()
    study = write_study(tmp_path / "study", 2)
    assert (
        storescu(box.port, sorted((tmp_path / "study").iterdir()), aet="CTSCANNER").returncode == 0
    )
    wait_for(box, event("instances-transferred", calling_ae="CTSCANNER"))

    listed = box.cli("audit", "--event", "instances-transferred", "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert record["studies"] == [study] and ET.fromstring(record["dicom"]).tag == "AuditMessage"

    table = box.cli("audit").stdout.splitlines()
    assert table[0].split() == ["TIME", "EVENT", "OUTCOME", "WHO", "WHAT"]
    (row,) = [line for line in table if "instances-transferred" in line]
    assert "success" in row and "CTSCANNER@127.0.0.1" in row and PATIENT in row and study in row

    assert len(json.loads(box.cli("audit", "--last", "2", "--json").stdout)) == 2
    messages = box.cli("audit", "--xml").stdout.splitlines()
    assert messages and all(ET.fromstring(m).tag == "AuditMessage" for m in messages)
    assert box.cli("audit", "--since", "2999-01-01").stdout.strip() == "no audit records"
    assert box.cli("audit", "--since", "yesterday").returncode == 2
    # Each reading of the trail is itself on it (PS3.15 Audit Log Used).
    used = [r for r in records(box) if r["event"] == "audit-log-used"]
    assert (
        len(used) >= 5 and code(xml_of(used[0]).find("EventIdentification"), "EventID") == "110101"
    )


def test_audit_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"audit.syslog = 'http://collector': expected udp"):
        parse_config({"audit": {"syslog": "http://collector"}})
    with pytest.raises(ConfigError, match=r"audit.syslog_ca = '/nonexistent.pem': no such file"):
        parse_config({"audit": {"syslog": "tls://collector", "syslog_ca": "/nonexistent.pem"}})
    with pytest.raises(ConfigError, match=r"audit.syslog_msgid = 'IHE DICOM'"):
        parse_config({"audit": {"syslog_msgid": "IHE DICOM"}})
    target = parse_config({"audit": {"syslog": "tls://collector"}}).audit.syslog
    assert target == "tls://collector"
