"""Fuzzing what the box decodes from the network and from received files.

Every decoder that takes a peer's bytes gets random bytes and, mostly, real objects with
a lie in them (tests/support/fuzz_seeds.py, fuzz_mutate.py): the PDU reader, the
A-ASSOCIATE-RQ negotiation, P-DATA reassembly and DIMSE dispatch, the command set codec,
the header walk of a received data set and the whole ingestion of a C-STORE. The property
everywhere: a value, or the clean protocol/data error its caller handles (an abort, a
C000/A900 status); never another exception, never a hang, never a read sized by a bogus
length, never a half file in the store. Then a running box takes a few hundred mutated
associations while a good peer keeps echoing and storing beside them.

DICOMBOX_FUZZ_EXAMPLES sets the examples per property (default 1000) for a long session,
DICOMBOX_FUZZ_STREAMS the mutated associations of the live test (default 500). Runs are
derandomized, so CI sees the same examples every time, unless DICOMBOX_FUZZ_RANDOM=1
(and DICOMBOX_FUZZ_SEED=n for other live streams). Each crash fuzzing found is pinned
below by a test_regression_* with its input as literal bytes.
"""

from __future__ import annotations

import io
import logging
import os
import random
import sqlite3
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from pydicom import config as pydicom_config
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_AC as AcPdu

from dicombox.core import header
from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.header import (
    Truncated,
    check_complete,
    read_stored_header,
    scan_header,
    value_of,
)
from dicombox.core.index.attributes import INDEXED_TAGS, level_values
from dicombox.core.ingest import (
    CANNOT_UNDERSTAND,
    DATA_REJECTIONS,
    DATASET_MISMATCH,
    DUPLICATE,
    SUCCESS,
    Arrival,
    Ingest,
    Outcome,
)
from dicombox.core.net import commands, pdu
from dicombox.core.net.association import AssociationAcceptor
from dicombox.core.net.policy import AssociationPolicy
from dicombox.core.net.registry import ServiceRegistry
from dicombox.core.store import file_meta
from dicombox.core.worker import collect_services
from tests.support import fuzz_seeds as seeds
from tests.support.faults import tmp_leftovers
from tests.support.fuzz_io import ScriptedSocket, send_stream, split_pdus
from tests.support.fuzz_mutate import mutate
from tests.support.fuzz_seeds import Seed, deflate
from tests.support.synthetic import ct_dataset

# pydicom warns about every odd value it meets, and fuzzed values are odd by design.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXAMPLES = int(os.environ.get("DICOMBOX_FUZZ_EXAMPLES", "1000"))
STREAMS = int(os.environ.get("DICOMBOX_FUZZ_STREAMS", "500"))
LIVE_SEED = int(os.environ.get("DICOMBOX_FUZZ_SEED", "5"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a first example warms caches; hangs are caught by timed() instead
    # Reproducible by default; DICOMBOX_FUZZ_RANDOM=1 explores new ground in a long hunt.
    derandomize=not os.environ.get("DICOMBOX_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
# One example taking this long is a hang in the making, not a slow machine.
EXAMPLE_SECONDS = 10.0
ANSWERS = (SUCCESS, DUPLICATE, CANNOT_UNDERSTAND, DATASET_MISMATCH)
UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
LEVELS = ("patient", "study", "series", "instance")
IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"

DATASETS = seeds.dataset_seeds()
COMMANDS = seeds.command_seeds()
IDENTIFIERS = seeds.identifier_seeds()
# The requests the fuzzer sends on an association, and the context each goes on.
SOP_CLASS_OF = {
    "C-ECHO-RQ": seeds.VERIFICATION,
    "C-STORE-RQ": seeds.CT_STORAGE,
    "C-FIND-RQ": seeds.STUDY_ROOT_FIND,
    "C-MOVE-RQ": seeds.STUDY_ROOT_MOVE,
    "C-GET-RQ": seeds.STUDY_ROOT_GET,
    "N-CREATE-RQ": seeds.MPPS,
    "N-SET-RQ": seeds.MPPS,
    "N-GET-RQ": seeds.MPPS,
    "N-ACTION-RQ": seeds.COMMITMENT,
    "C-CANCEL-RQ": seeds.STUDY_ROOT_FIND,
    "C-STORE-RSP": seeds.CT_STORAGE,
}


def mutated(pool: tuple[Seed, ...] | list[Seed]) -> st.SearchStrategy[tuple[Seed, bytes]]:
    """A seed of ``pool`` and a mutation of it, as the peer would send it."""
    return st.tuples(st.sampled_from(pool), st.randoms(use_true_random=False)).map(
        lambda pair: (pair[0], mutate(pair[0], pair[1]))
    )


def garbage(prefix: bytes = b"") -> st.SearchStrategy[tuple[Seed, bytes]]:
    """Random bytes, perhaps after a plausible start."""
    return st.binary(max_size=1024).map(lambda raw: (Seed("random", b""), prefix + raw))


def timed(action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    assert elapsed < EXAMPLE_SECONDS, f"took {elapsed:.1f} s: a hang in the making"
    return result


# ------------------------------------------------------------ the in-process host
def is_crash(record: logging.LogRecord) -> bool:
    """On fuzzed input, a traceback in the log, or an error of the box's own, is a crash
    that a handler or the server caught. pynetdicom logs errors (and, for a non-ASCII
    AE title, a traceback) of its own for the peer's bad values, then raises, and the box
    aborts: that is the expected path, not a crash."""
    if record.name.startswith("dicombox"):
        return record.levelno >= logging.ERROR or bool(record.exc_info)
    return bool(record.exc_info) and record.name != "pynetdicom.utils"


class CrashRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if is_crash(record):
            self.records.append(record)

    def take(self) -> list[str]:
        found = [logging.Formatter().format(r) for r in self.records]
        self.records.clear()
        return found


class Host:
    """A box's services, association policy and ingest in this process; associations
    run over scripted sockets instead of TCP."""

    def __init__(self, box: Box, crashes: CrashRecords) -> None:
        self.box = box
        self.registry = ServiceRegistry(collect_services(box), box.config.box.ae_title)
        titles = self.registry.local_titles | set(box.local_ae_titles())
        self.policy = AssociationPolicy(box.config, titles)
        self.ingest = Ingest(box)
        self.crashes = crashes

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "Host()"

    def associate(self, incoming: bytes) -> list[tuple[int, bytes]]:
        """Run one association over ``incoming`` to its end; the PDUs the box answered."""
        sock = ScriptedSocket(incoming)
        acceptor = AssociationAcceptor(
            sock,  # type: ignore[arg-type]
            ("127.0.0.1", 40000),
            self.registry,
            self.policy,
            self.box.config.network,
            lambda topic, **fields: None,
        )
        timed(acceptor.run)  # it handles every error it expects: anything else escapes
        assert sock.largest_read <= max(pdu.MAX_ASSOCIATION_PDU, pdu.CHUNK)
        self.assert_no_crash()
        return split_pdus(bytes(sock.sent))

    def take_in(self, data: bytes, arrival: Arrival) -> Outcome:
        """Ingest ``data`` as a C-STORE's data set, as the storage SCP does."""
        sink = self.ingest.open(arrival)
        for start in range(0, len(data), 16384):
            sink.write(data[start : start + 16384])
        sink.close()
        outcome = timed(lambda: self.ingest.finish(sink, arrival))
        self.assert_no_crash()
        return outcome

    def assert_no_crash(self) -> None:
        crashes = self.crashes.take()
        assert not crashes, "\n".join(crashes)
        # the box's services run in this process, which makes its files ahead too
        left = tmp_leftovers(self.box.data_dir, [os.getpid()])
        assert not left, f"left in tmp/: {left}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("fuzzhost")
    config_path = root / "box.toml"
    # Promiscuous storage widens what negotiation and ingestion accept: more code reached.
    config_path.write_text("[storage]\naccept_unknown_classes = true\n")
    config, pm, infos = load_plugins_and_config(config_path, data_dir=str(root / "var"))
    box = open_box(config, pm, infos, role="worker")
    crashes = CrashRecords()
    logging.getLogger().addHandler(crashes)
    # As a network worker runs: received values are not validated against their VRs.
    previous = pydicom_config.settings.reading_validation_mode
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        yield Host(box, crashes)
    finally:
        pydicom_config.settings.reading_validation_mode = previous
        logging.getLogger().removeHandler(crashes)
        box.close()


# ------------------------------------------------------------------------ PDU reader
def read_every_pdu(stream: bytes, max_pdu: int) -> tuple[ScriptedSocket, list[bytes]]:
    """Read ``stream`` as the acceptor does, PDU after PDU, until it ends or the reader
    refuses it; returns the socket and the PDV value pieces handed on."""
    sock = ScriptedSocket(stream)
    reader = pdu.PduSocket(sock)  # type: ignore[arg-type]
    pieces: list[bytes] = []
    try:
        while True:
            pdu_type, length = reader.read_pdu_header()
            if pdu_type == pdu.P_DATA_TF:
                reader.read_p_data(
                    length, lambda pdv, n: None, pieces.append, lambda pdv: None, max_pdu
                )
            else:
                reader.read_small_pdu_body(pdu_type, length)
    except (pdu.ProtocolError, pdu.PeerClosed) as exc:
        event(type(exc).__name__)
    return sock, pieces


def store_pdus() -> Seed:
    command = seeds.command_seeds()[1].data
    return seeds.p_data_seed("P-DATA C-STORE", 3, command, DATASETS[0].data[:3000], 512)


PDU_SEEDS = [seeds.association_seed(), store_pdus(), *seeds.short_pdu_seeds()]


@FUZZ
@given(
    sample=st.one_of(mutated(PDU_SEEDS), garbage(), garbage(b"\x04\x00")),
    max_pdu=st.sampled_from([0, 512, 16384]),
)
def test_pdu_reader_takes_any_stream(sample: tuple[Seed, bytes], max_pdu: int):
    seed, stream = sample
    note(f"{seed.name}: {stream.hex()}")
    sock, pieces = timed(lambda: read_every_pdu(stream, max_pdu))
    assert sum(map(len, pieces)) <= len(stream), "more PDV bytes handed on than received"
    assert all(len(piece) <= pdu.CHUNK for piece in pieces)
    # A read allocates what it asks for: a length from the wire must never size it.
    assert sock.largest_read <= max(pdu.MAX_ASSOCIATION_PDU, pdu.CHUNK)


# ------------------------------------------------------------------- A-ASSOCIATE-RQ
@FUZZ
@given(sample=st.one_of(mutated([seeds.association_seed()]), garbage(b"\x01\x00")))
def test_association_request_is_accepted_rejected_or_aborted(host: Host, sample):
    _, request = sample
    note(request.hex())
    answers = host.associate(request + pdu.release_rq())
    if not answers:
        event("no answer: the request was cut short")
        return
    first, body = answers[0]
    event(f"answer {pdu.PDU_NAMES.get(first, first)}")
    assert first in (pdu.A_ASSOCIATE_AC, pdu.A_ASSOCIATE_RJ, pdu.A_ABORT)
    if first == pdu.A_ASSOCIATE_AC:
        AcPdu().decode(bytes([first, 0]) + len(body).to_bytes(4, "big") + body)
        # The release is answered; or, when the request's own lengths lied so that its
        # tail reads as a next PDU, that is aborted.
        assert [t for t, _ in answers[1:]] in ([], [pdu.A_RELEASE_RP], [pdu.A_ABORT])


# -------------------------------------------------------------------- command sets
@FUZZ
@given(sample=st.one_of(mutated(COMMANDS), garbage()))
def test_command_set_decodes_or_is_refused(sample: tuple[Seed, bytes]):
    _, data = sample
    note(data.hex())
    try:
        command = commands.decode_command(data)
    except commands.CommandError:
        event("refused")
        return
    event(f"decoded {command.name if command.field in commands.COMMAND_NAMES else 'other'}")
    # What the acceptor reads of every command, and the response it then builds.
    _ = (command.field, command.name, command.has_dataset, command.MessageID)
    _ = (command.sop_class_uid, command.sop_instance_uid, command.MessageIDBeingRespondedTo)
    response = commands.decode_command(commands.response_for(command, 0xC000))
    assert response.field == command.field | 0x8000 and response.Status == 0xC000


# ------------------------------------------------------------ messages on an association
def storage_request(seed: Seed) -> tuple[bytes, int]:
    """An A-ASSOCIATE-RQ with a context for ``seed``'s class in its own syntax; and
    that context's ID."""
    contexts = (
        (seeds.VERIFICATION, (IMPLICIT_LE,)),
        (seed.sop_class_uid or seeds.CT_STORAGE, (seed.transfer_syntax,)),
    )
    return seeds.association_request(contexts=contexts), 3


def store_command(seed: Seed) -> Seed:
    values = dict(seeds.COMMANDS["C-STORE-RQ"])
    values["AffectedSOPClassUID"] = seed.sop_class_uid or seeds.CT_STORAGE
    values["AffectedSOPInstanceUID"] = seed.sop_instance_uid or "1.2.3"
    return seeds.command_seed("C-STORE-RQ", seeds.command_set(**values))


def message_stream(rng: random.Random) -> tuple[bytes, str]:
    """A good association request, one or two messages with a lie in one layer (the
    command set, the data set, or the P-DATA framing), then a release request."""
    if rng.random() < 0.5:  # a C-STORE of a corpus object, in its own transfer syntax
        data_seed = rng.choice(DATASETS)
        request, context = storage_request(data_seed)
        messages = [(store_command(data_seed), data_seed, context)]
    else:
        request = seeds.association_request()
        messages = []
        for _ in range(rng.randint(1, 2)):
            command = rng.choice(COMMANDS)
            dataset = IDENTIFIERS.get(command.name)
            if command.name == "C-STORE-RQ":
                dataset = rng.choice(DATASETS)  # mostly refused: another syntax
            context = seeds.CONTEXT_ID[SOP_CLASS_OF[command.name]]
            messages.append((command, dataset, context))
    parts, names = [], []
    for command, dataset, context in messages:
        layer = rng.choice(["command", "dataset", "dataset", "framing", "none"])
        command_bytes = mutate(command, rng) if layer == "command" else command.data
        dataset_bytes = b""
        if dataset is not None:
            dataset_bytes = mutate(dataset, rng) if layer == "dataset" else dataset.wire()
        framed = seeds.p_data_seed(
            "message", context, command_bytes, dataset_bytes, rng.choice([0, 256, 16384])
        )
        parts.append(mutate(framed, rng) if layer == "framing" else framed.data)
        names.append(f"{command.name} {dataset.name if dataset else '-'} {layer}")
    return request + b"".join(parts) + pdu.release_rq(), ", ".join(names)


@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_mutated_messages_are_answered_or_aborted(host: Host, rng: random.Random):
    stream, what = message_stream(rng)
    note(f"{what}: {stream.hex()}")
    answers = host.associate(stream)
    assert answers and answers[0][0] == pdu.A_ASSOCIATE_AC
    event("then " + " ".join(pdu.PDU_NAMES.get(t, str(t)) for t, _ in answers[1:]))
    for pdu_type, body in answers[1:]:
        assert pdu_type in (pdu.P_DATA_TF, pdu.A_RELEASE_RP, pdu.A_ABORT)
        if pdu_type == pdu.P_DATA_TF and body[5] & 1:  # a command the box built: it decodes
            assert commands.decode_command(body[6:]).field & 0x8000


# -------------------------------------------------------------------- data set ingestion
def received_file(directory: Path, seed: Seed, data: bytes) -> Path:
    """``data`` as the store's temporary file holds it: box-written meta, then the data
    set exactly as received."""
    meta = file_meta(
        seed.sop_class_uid or seeds.CT_STORAGE,
        "1.2.3",
        seed.transfer_syntax,
        "FUZZ",
        "1.2.3.4",
        "FUZZ",
    )
    path = directory / "received.dcm"
    path.write_bytes(meta + data)
    return path


@FUZZ
@given(sample=mutated(DATASETS))
def test_header_walk_parses_or_rejects_cleanly(host: Host, tmp_path_factory, sample):
    seed, data = sample
    note(f"{seed.name} ({seed.transfer_syntax}): {data.hex()}")
    path = received_file(tmp_path_factory.getbasetemp(), seed, data)
    end = path.stat().st_size
    try:
        ds = timed(
            lambda: scan_header(path, end - len(data), end, seed.transfer_syntax, INDEXED_TAGS)
        )
    except DATA_REJECTIONS as exc:
        event(f"rejected: {type(exc).__name__}")
        return
    event("walked")
    # What ingestion reads of a walked header before it stores: the UIDs and the rows.
    for keyword in UID_KEYWORDS:
        value_of(ds, keyword)
    for level in LEVELS:
        level_values(ds, level)


@FUZZ
@given(sample=mutated([s for s in DATASETS if not s.deflated]))
def test_completeness_walk_is_whole_or_truncated(sample: tuple[Seed, bytes]):
    seed, data = sample
    note(f"{seed.name}: {data.hex()}")
    explicit, little = seed.transfer_syntax != IMPLICIT_LE, seed.transfer_syntax != EXPLICIT_BE
    try:
        timed(lambda: check_complete(io.BytesIO(data), 0, len(data), explicit, little))
    except Truncated:
        event("truncated")
    else:
        event("whole")


def assert_whole(path: Path) -> None:
    """The stored file holds a whole data set: by the box's walk of the file, by the
    same walk over bytes inflated here (not by the code under test), and by pydicom."""
    ds = read_stored_header(path, INDEXED_TAGS)
    assert value_of(ds, "SOPInstanceUID")
    raw = path.read_bytes()
    start = header.dataset_offset(path)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    body = raw[start:]
    if syntax == "1.2.840.10008.1.2.1.99":
        body = zlib.decompress(body, -zlib.MAX_WBITS)
    check_complete(io.BytesIO(body), 0, len(body), syntax != IMPLICIT_LE, syntax != EXPLICIT_BE)
    pydicom.dcmread(path)  # and pydicom, which all later work on it uses, reads it through


@FUZZ
@given(sample=mutated(DATASETS), announced=st.booleans())
def test_ingest_stores_whole_or_rejects_cleanly(host: Host, sample, announced: bool):
    seed, data = sample
    note(f"{seed.name} ({seed.transfer_syntax}): {data.hex()}")
    arrival = Arrival(
        transfer_syntax=seed.transfer_syntax,
        source_ae="FUZZSCU",
        # As the command announced it, or unchecked (a C-GET sub-operation's data set).
        sop_class_uid=seed.sop_class_uid if announced else "",
        sop_instance_uid=seed.sop_instance_uid if announced else "",
        association="fuzz",
    )
    outcome = host.take_in(data, arrival)
    event(f"status {outcome.status:04X}")
    assert outcome.status in ANSWERS, f"{outcome.status:04X} {outcome.comment}"
    if "path" in outcome.extra:  # stored: whole, and indexed where it lies
        assert_whole(host.box.store.path(outcome.extra["path"]))
        assert host.box.index.instance_rows(path=outcome.extra["path"])


# ------------------------------------------------------------------------ regressions
# Each crash fuzzing found, with its input as literal bytes: these run whatever
# hypothesis happens to generate.
def explicit_le(*elements: bytes) -> bytes:
    return b"".join(elements)


SOP_CLASS = b"\x08\x00\x16\x00UI\x04\x001.2\x00"
SOP_INSTANCE = b"\x08\x00\x18\x00UI\x04\x001.3\x00"
STUDY = b"\x20\x00\x0d\x00UI\x04\x001.4\x00"
SERIES = b"\x20\x00\x0e\x00UI\x04\x001.5\x00"


def unchecked(syntax: str = ExplicitVRLittleEndian) -> Arrival:
    return Arrival(transfer_syntax=syntax, source_ae="FUZZSCU", association="regression")


# A C-ECHO-RQ whose Affected SOP Class UID is the single byte 0xE9: decoded as U+FFFD,
# and the response that echoes it could not be encoded (UnicodeEncodeError escaped the
# association: no answer, a traceback in the log).
ECHO_WITH_LATIN1_UID = bytes.fromhex(
    "0000020002000000e900"  # (0000,0002) Affected SOP Class UID "\xe9"
    "0000000102000000 3000"  # (0000,0100) Command Field C-ECHO-RQ
    "0000100102000000 0100"  # (0000,0110) Message ID 1
    "0000000802000000 0101"  # (0000,0800) Command Data Set Type: none
)


def test_regression_non_ascii_uid_in_a_command_is_answered(host: Host):
    command = commands.decode_command(ECHO_WITH_LATIN1_UID)
    response = commands.decode_command(commands.response_for(command, 0x0000))
    assert response.AffectedSOPClassUID == "?" and response.Status == 0
    request = seeds.association_request(contexts=((seeds.VERIFICATION, (IMPLICIT_LE,)),))
    echo = pdu.p_data_pdus(1, ECHO_WITH_LATIN1_UID, True, 0)[0]
    answers = host.associate(request + echo + pdu.release_rq())
    assert [t for t, _ in answers] == [pdu.A_ASSOCIATE_AC, pdu.P_DATA_TF, pdu.A_RELEASE_RP]
    assert commands.decode_command(answers[1][1][6:]).field == commands.C_ECHO_RSP


def test_regression_non_ascii_error_comment_is_sent(host: Host):
    # The A900 comment quotes the data set's SOP class, here with a byte 0xFF in it.
    command = commands.decode_command(commands.encode_command(CommandField=1, MessageID=1))
    encoded = commands.response_for(command, 0xA900, ErrorComment="is not \ufffd.2.840")
    assert commands.decode_command(encoded).ErrorComment == "is not ?.2.840"


# A C-STORE-RQ whose command says no data set follows: the storage SCP read the data set
# that never came (AttributeError on None), answered 0110, logged a traceback. So did
# the C-FIND SCP (and the other handlers of requests that must carry a data set).
STORE_WITHOUT_DATA_SET = bytes.fromhex(
    "000002001a000000312e322e3834302e31303030382e352e312e342e312e312e3200"  # CT Image Storage
    "00000001020000000100"  # Command Field C-STORE-RQ
    "00001001020000000100"  # Message ID 1
    "00000007020000000000"  # Priority
    "00000008020000000101"  # Command Data Set Type: none
    "0000001006000000312e322e3300"  # Affected SOP Instance UID 1.2.3
)
FIND_WITHOUT_IDENTIFIER = bytes.fromhex(
    "000002001c000000312e322e3834302e31303030382e352e312e342e312e322e322e3100"  # Study Root
    "00000001020000002000"  # Command Field C-FIND-RQ
    "00001001020000000300"  # Message ID 3
    "00000007020000000000"  # Priority
    "00000008020000000101"  # Command Data Set Type: none
)


@pytest.mark.parametrize(
    ("sop_class", "command"),
    [(seeds.CT_STORAGE, STORE_WITHOUT_DATA_SET), (seeds.STUDY_ROOT_FIND, FIND_WITHOUT_IDENTIFIER)],
    ids=["C-STORE", "C-FIND"],
)
def test_regression_request_without_its_data_set_is_aborted(host: Host, sop_class, command):
    request = seeds.association_request(contexts=((sop_class, (IMPLICIT_LE,)),))
    message = pdu.p_data_pdus(1, command, True, 0)[0]
    answers = host.associate(request + message + pdu.release_rq())
    assert [t for t, _ in answers] == [pdu.A_ASSOCIATE_AC, pdu.A_ABORT]
    assert answers[1][1][3] == pdu.REASON_UNEXPECTED_PDU


def association_rq(*items: bytes) -> bytes:
    fixed = b"\x00\x01\x00\x00" + b"DICOMBOX".ljust(16) + b"FUZZSCU".ljust(16) + bytes(32)
    body = fixed + b"".join(items)
    return struct.pack(">BBI", pdu.A_ASSOCIATE_RQ, 0, len(body)) + body


APPLICATION_CONTEXT = b"\x10\x00\x00\x15" + b"1.2.840.10008.3.1.1.1"
USER_INFORMATION = b"\x50\x00\x00\x08" + b"\x51\x00\x00\x04\x00\x00\x40\x00"  # max PDU 16384


@pytest.mark.parametrize(
    "context",
    [
        # Verification without a transfer syntax item: IndexError in pynetdicom's
        # negotiation, the association thread died without an answer.
        b"\x20\x00\x00\x19\x01\x00\x00\x00" + b"\x30\x00\x00\x11" + b"1.2.840.10008.1.1",
        # A transfer syntax without an abstract syntax item: TypeError, the same.
        b"\x20\x00\x00\x19\x01\x00\x00\x00" + b"\x40\x00\x00\x11" + b"1.2.840.10008.1.2",
    ],
    ids=["no-transfer-syntax", "no-abstract-syntax"],
)
def test_regression_presentation_context_missing_a_syntax_is_aborted(host: Host, context):
    answers = host.associate(association_rq(APPLICATION_CONTEXT, context, USER_INFORMATION))
    assert [t for t, _ in answers] == [pdu.A_ABORT]
    assert answers[0][1][3] == pdu.REASON_INVALID_PARAMETER


# A deflated data set whose deflate stream is cut: zlib.error escaped ingestion.
DEFLATED_CUT = deflate(explicit_le(SOP_CLASS, SOP_INSTANCE, STUDY, SERIES))[:9]


def test_regression_cut_deflate_stream_is_c000(host: Host):
    outcome = host.take_in(DEFLATED_CUT, unchecked("1.2.840.10008.1.2.1.99"))
    assert outcome.status == CANNOT_UNDERSTAND, outcome


# A whole deflate stream of a data set cut inside its pixel data: the header walk was
# skipped for deflated data sets, and the half data set was stored with status 0000.
DATASET_CUT_IN_PIXELS = explicit_le(
    SOP_CLASS, SOP_INSTANCE, STUDY, SERIES, b"\xe0\x7f\x10\x00OB\x00\x00\x10\x00\x00\x00AAAA"
)


def test_regression_deflated_data_set_cut_in_its_pixels_is_not_stored(host: Host):
    outcome = host.take_in(deflate(DATASET_CUT_IN_PIXELS), unchecked("1.2.840.10008.1.2.1.99"))
    assert outcome.status == CANNOT_UNDERSTAND and "path" not in outcome.extra, outcome


def test_regression_deflate_bomb_is_refused_unread(host: Host, monkeypatch):
    monkeypatch.setattr(header, "MAX_INFLATED", 1 << 20)  # stands for 256 MiB here
    bomb = explicit_le(SOP_CLASS, SOP_INSTANCE, STUDY, SERIES) + b"\xe0\x7f\x10\x00OB\x00\x00"
    bomb += struct.pack("<I", 4 << 20) + bytes(4 << 20)
    outcome = host.take_in(deflate(bomb), unchecked("1.2.840.10008.1.2.1.99"))
    assert outcome.status == CANNOT_UNDERSTAND and "inflates past" in outcome.comment


# Specific Character Set with the VR UL: pydicom's BytesLengthException (no ValueError)
# escaped the header scan.
CHARSET_AS_UL = b"\x08\x00\x05\x00UL\x0a\x00ISO_IR 100"
# Study Instance UID with the VR US: a list of numbers reached the store's path maker
# (TypeError).
STUDY_AS_US = b"\x20\x00\x0d\x00US\x04\x00\x01\x00\x02\x00"


def test_regression_charset_with_a_numeric_vr_is_c000(host: Host):
    data = explicit_le(CHARSET_AS_UL, SOP_CLASS, SOP_INSTANCE, STUDY, SERIES)
    outcome = host.take_in(data, unchecked())
    assert outcome.status == CANNOT_UNDERSTAND, outcome


# Specific Character Set as an empty sequence of undefined length: the box stored it,
# and pydicom could not read the stored file back (AttributeError in its reader).
CHARSET_AS_SEQUENCE = b"\x08\x00\x05\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def test_regression_charset_as_a_sequence_is_c000(host: Host):
    data = explicit_le(CHARSET_AS_SEQUENCE, SOP_CLASS, SOP_INSTANCE, STUDY, SERIES)
    outcome = host.take_in(data, unchecked())
    assert outcome.status == CANNOT_UNDERSTAND and "not text" in outcome.comment, outcome


def test_regression_uid_with_a_numeric_vr_is_a900(host: Host):
    data = explicit_le(SOP_CLASS, SOP_INSTANCE, STUDY_AS_US, SERIES)
    outcome = host.take_in(data, unchecked())
    assert outcome.status == DATASET_MISMATCH and "not a UID" in outcome.comment, outcome


@pytest.mark.parametrize(
    "element",
    [
        b"\x18\x00\x00\x51IS\x04\x00HFS ",  # Patient Position as IS: int("HFS") in to_json
        b"\x18\x00\x00\x10AT\x08\x00\x10\x00\x10\x00\x10\x00\x20\x00",  # Serial Number as AT
    ],
    ids=["position-as-IS", "serial-as-AT"],
)
def test_regression_return_only_value_its_vr_cannot_express_is_stored(host: Host, element):
    # The index's DICOM JSON of return-only attributes raised, and the instance was
    # answered A700 "index unavailable" with a traceback.
    uid = f"1.3.{random.Random(element).randrange(1 << 30)}".encode()
    uid += b"\x00" * (len(uid) % 2)
    instance = b"\x08\x00\x18\x00UI" + struct.pack("<H", len(uid)) + uid
    data = explicit_le(SOP_CLASS, instance, STUDY, SERIES, element)
    outcome = host.take_in(data, unchecked())
    assert outcome.status == SUCCESS, outcome
    assert_whole(host.box.store.path(outcome.extra["path"]))


# A C-STORE-RQ with its data set, sent while a C-FIND with matches is still answering:
# the box aborted, but the data set it had streamed to tmp/ stayed there (and its file
# descriptor open), one more with every such association.
FIND_STUDY_1_4 = bytes.fromhex(
    "000002001c000000312e322e3834302e31303030382e352e312e342e312e322e322e3100"  # Study Root
    "00000001020000002000"  # Command Field C-FIND-RQ
    "00001001020000000300"  # Message ID 3
    "00000007020000000000"  # Priority
    "00000008020000000000"  # Command Data Set Type: an identifier follows
)
IDENTIFIER_STUDY_1_4 = (
    b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " + b"\x20\x00\x0d\x00\x04\x00\x00\x001.4\x00"
)
STORE_WITH_DATA_SET = STORE_WITHOUT_DATA_SET.replace(
    bytes.fromhex("00000008020000000101"), bytes.fromhex("00000008020000000000")
)


def test_regression_request_during_an_operation_leaves_no_file(host: Host):
    data = explicit_le(SOP_CLASS, SOP_INSTANCE, STUDY, SERIES)
    assert host.take_in(data, unchecked()).status == SUCCESS  # so that the C-FIND matches
    request = seeds.association_request(
        contexts=(
            (seeds.STUDY_ROOT_FIND, (IMPLICIT_LE,)),
            (seeds.CT_STORAGE, (ExplicitVRLittleEndian,)),
        )
    )
    messages = [
        *pdu.p_data_pdus(1, FIND_STUDY_1_4, True, 0),
        *pdu.p_data_pdus(1, IDENTIFIER_STUDY_1_4, False, 0),
        *pdu.p_data_pdus(3, STORE_WITH_DATA_SET, True, 0),
        *pdu.p_data_pdus(3, data, False, 0),
    ]
    answers = host.associate(request + b"".join(messages) + pdu.release_rq())  # no leftovers
    assert [t for t, _ in answers] == [pdu.A_ASSOCIATE_AC, pdu.A_ABORT]


@pytest.mark.parametrize(
    "element",
    [b"\x40\x00\x75\x02CS\x0a\x00ISO_IR 100", b"\x40\x00\x75\x02US\x02\x00\x01\x00"],
    ids=["as-text", "as-number"],
)
def test_regression_request_attributes_sequence_of_another_vr_is_indexed(host: Host, element):
    # The index took the Request Attributes Sequence's first item without a look at
    # what it was (TypeError), and the instance was answered A700 "index unavailable".
    uid = f"1.3.{random.Random(element).randrange(1 << 30)}".encode()
    uid += b"\x00" * (len(uid) % 2)
    instance = b"\x08\x00\x18\x00UI" + struct.pack("<H", len(uid)) + uid
    outcome = host.take_in(explicit_le(SOP_CLASS, instance, STUDY, SERIES, element), unchecked())
    assert outcome.status == SUCCESS, outcome


# An instance the box holds, sent again with another Study Instance UID: the new file
# was placed under the new study, the index refused its row (the SOP Instance UID is
# known), and the box answered "file restored", leaving a file nothing serves.
STUDY_1_6 = b"\x20\x00\x0d\x00UI\x04\x001.6\x00"


def test_regression_known_instance_under_another_study_leaves_no_orphan(host: Host):
    instance = b"\x08\x00\x18\x00UI\x08\x001.3.1.6\x00"
    first = host.take_in(explicit_le(SOP_CLASS, instance, STUDY, SERIES), unchecked())
    again = host.take_in(explicit_le(SOP_CLASS, instance, STUDY_1_6, SERIES), unchecked())
    assert first.status == SUCCESS and again.status == SUCCESS, (first, again)
    assert again.extra.get("duplicate") and "path" not in again.extra
    rows = host.box.index.instance_rows(sop_instance_uid="1.3.1.6")
    assert [row["path"] for row in rows] == [first.extra["path"]]
    assert not list((host.box.store.studies / "1.6").rglob("*.dcm")), "an orphan file stayed"


# ------------------------------------------------------------------- the live box
def live_stream(rng: random.Random) -> tuple[str, bytes]:
    """One mutated association for the running box: a lying request, a good one with
    lying messages, or noise."""
    roll = rng.random()
    if roll < 0.35:
        return "request", mutate(seeds.association_seed(), rng) + pdu.release_rq()
    if roll < 0.9:
        stream, _ = message_stream(rng)
        return "messages", stream
    return "noise", rng.choice([b"\x01\x00", b"\x04\x00", b""]) + rng.randbytes(rng.randint(0, 300))


@dataclass
class GoodPeer:
    """Echoes and stores, association after association, until told to stop."""

    port: int
    stop: threading.Event
    rounds: list[str]

    def run(self) -> None:
        ae = AE(ae_title="GOODSCU")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        study, series = generate_uid(), generate_uid()
        number = 0
        while not self.stop.is_set():
            number += 1
            ds = ct_dataset(study, series, number, rows=16, columns=16)
            assoc = ae.associate("127.0.0.1", self.port, ae_title="DICOMBOX")
            if not assoc.is_established:
                self.rounds.append("association refused")
                continue
            echo, store = assoc.send_c_echo(), assoc.send_c_store(ds)
            assoc.release()
            ok = echo.get("Status") == 0 and store.get("Status") == 0
            self.rounds.append("ok" if ok else f"echo {echo} store {store}")


def indexed_paths(data_dir: Path) -> list[str]:
    with sqlite3.connect(f"file:{data_dir / 'index.sqlite'}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT path FROM instances")]


def test_live_box_serves_a_good_peer_while_fuzzed(make_box):
    box = make_box("[storage]\naccept_unknown_classes = true\n")
    pids = sorted(box.pids())
    peer = GoodPeer(box.port, threading.Event(), [])
    thread = threading.Thread(target=peer.run, daemon=True)
    thread.start()
    rng = random.Random(LIVE_SEED)  # the same streams on every run unless told otherwise
    kinds: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    try:
        for _ in range(STREAMS):
            kind, stream = live_stream(rng)
            kinds[kind] += 1
            answer = send_stream(box.port, stream)
            answers[pdu.PDU_NAMES.get(answer[0], "?") if answer else "nothing"] += 1
    finally:
        peer.stop.set()
        thread.join(120)
    print(f"streams {dict(kinds)}; first answers {dict(answers)}; good rounds {len(peer.rounds)}")
    assert len(peer.rounds) >= 3, "the good peer hardly got a turn"
    assert set(peer.rounds) == {"ok"}, Counter(peer.rounds)
    assert sorted(box.pids()) == pids, "a box process died or was restarted"
    assert answers["nothing"] < STREAMS, "the box answered no fuzzed association at all"
    deadline = time.monotonic() + 30
    while tmp_leftovers(box.data_dir, pids) and time.monotonic() < deadline:
        time.sleep(0.2)  # the last fuzzed associations may still be finishing
    assert not tmp_leftovers(box.data_dir, pids), "something was left in tmp/"
    stored = sorted(
        p.relative_to(box.data_dir).as_posix() for p in (box.data_dir / "studies").rglob("*.dcm")
    )
    indexed = sorted(indexed_paths(box.data_dir))
    assert stored == indexed, "files and index rows differ"
    for relpath in indexed:
        assert_whole(box.data_dir / relpath)
    output = box.output()
    assert "Traceback" not in output, output[output.find("Traceback") - 2000 :][:6000]
    assert "crashed" not in output
