"""Seeds for fuzzing: real protocol objects, with a map of their structure.

An A-ASSOCIATE-RQ as a full-featured requestor sends it (encoded by pynetdicom), DIMSE
command sets encoded by pydicom (not by the box's own codec), data sets cut from pydicom's
test files exactly as they lie there, and the P-DATA-TF PDUs that carry a message. Each
seed notes where its length fields, VRs and items are, so that mutations (see
fuzz_mutate.py) can lie about a length or corrupt a VR instead of only flipping bits.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.pdu import A_ASSOCIATE_RQ as RqPdu
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import build_context

from dicombox.core.net import pdu

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
NATIVE_AND_DEFLATED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
# The contexts association_request() proposes by default, with their IDs (1, 3, 5 …).
DEFAULT_CONTEXTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (VERIFICATION, (ImplicitVRLittleEndian,)),
    (CT_STORAGE, NATIVE_AND_DEFLATED),
    (MR_STORAGE, (ExplicitVRLittleEndian, ImplicitVRLittleEndian)),
    (STUDY_ROOT_FIND, (ImplicitVRLittleEndian,)),
    (STUDY_ROOT_MOVE, (ImplicitVRLittleEndian,)),
    (STUDY_ROOT_GET, (ImplicitVRLittleEndian,)),
    (WORKLIST_FIND, (ImplicitVRLittleEndian,)),
    (MPPS, (ImplicitVRLittleEndian,)),
    (COMMITMENT, (ImplicitVRLittleEndian,)),
)
CONTEXT_ID = {uid: 2 * n + 1 for n, (uid, _) in enumerate(DEFAULT_CONTEXTS)}

# Data sets of pydicom's test files that cover what a C-STORE can carry: each transfer
# syntax family, encapsulated pixel data, undefined-length and nested sequences, UN
# sequences, specific character sets.
CORPUS_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_rle_2frame.dcm",
    "image_dfl.dcm",
    "rtplan.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "rtdose_1frame.dcm",
    "UN_sequence.dcm",
    "priv_SQ.dcm",
    "nested_priv_SQ.dcm",
    "empty_charset_LEI.dcm",
)
CHARSET_FILES = ("chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm")

LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


@dataclass(frozen=True)
class Field:
    """A length (or another small number) inside a seed: ``size`` bytes at ``offset``."""

    offset: int
    size: int
    big_endian: bool

    @property
    def byteorder(self) -> str:
        return "big" if self.big_endian else "little"

    def read(self, data: bytes | bytearray) -> int:
        return int.from_bytes(data[self.offset : self.offset + self.size], self.byteorder)


@dataclass(frozen=True)
class Seed:
    """A real protocol object and the map of its structure that mutations aim at.

    ``kind`` names its format ("association", "command", "dataset", "p-data"), for the
    mutations that edit it and re-encode it with true lengths."""

    name: str
    data: bytes
    kind: str = ""
    lengths: tuple[Field, ...] = ()
    items: tuple[tuple[int, int], ...] = ()  # byte ranges of whole items or elements
    vrs: tuple[int, ...] = ()  # offsets of explicit VR codes
    transfer_syntax: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    deflated: bool = False  # ``data`` is the inflated data set; it travels deflated

    @property
    def explicit(self) -> bool:
        return self.transfer_syntax != ImplicitVRLittleEndian

    @property
    def little(self) -> bool:
        return self.transfer_syntax != ExplicitVRBigEndian

    def wire(self) -> bytes:
        """The bytes as they travel (a deflated data set deflated again)."""
        return deflate(self.data) if self.deflated else self.data


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


# ------------------------------------------------------------------- A-ASSOCIATE-RQ
def association_request(
    calling: str = "FUZZSCU",
    called: str = "DICOMBOX",
    contexts: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_CONTEXTS,
) -> bytes:
    """A full-featured A-ASSOCIATE-RQ, encoded by pynetdicom as a real requestor sends
    it: many contexts, and every user information sub-item a peer may send."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    built = []
    for number, (abstract, syntaxes) in enumerate(contexts):
        cx = build_context(abstract, list(syntaxes))
        cx.context_id = 2 * number + 1
        built.append(cx)
    primitive.presentation_context_definition_list = built
    primitive.user_information = _user_information()
    rq = RqPdu()
    rq.from_primitive(primitive)
    return bytes(rq.encode())


def _user_information() -> list[object]:
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = "1.2.826.0.1.3680043.9.9999.1"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "FUZZ_1"
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 2
    window.maximum_number_operations_performed = 2
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT_STORAGE
    role.scu_role, role.scp_role = True, True
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = STUDY_ROOT_FIND
    extended.service_class_application_information = b"\x01\x01\x01"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CT_STORAGE
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.positive_response_requested = True
    identity.primary_field = b"fuzzer"
    identity.secondary_field = b"secret"
    return [length, uid, version, window, role, extended, common, identity]


# User information sub-items with a length inside them: where, relative to the sub-item.
_INNER_LENGTHS = {0x54: 4, 0x56: 4, 0x57: 4, 0x58: 6}


def association_seed(data: bytes | None = None) -> Seed:
    """An A-ASSOCIATE-RQ PDU with its PDU, item, sub-item and inner lengths mapped
    (PS3.8 §9.3.2)."""
    data = association_request() if data is None else data
    lengths = [Field(2, 4, True)]
    items: list[tuple[int, int]] = []
    pos = 74  # after the fixed fields: type, length, version, AE titles, reserved
    while pos + 4 <= len(data):
        item_type = data[pos]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 4 + length
        lengths.append(Field(pos + 2, 2, True))
        items.append((pos, end))
        first_sub = {0x20: pos + 8, 0x50: pos + 4}.get(item_type)
        if first_sub is not None:
            _map_sub_items(data, first_sub, end, lengths, items)
        pos = end
    return Seed("A-ASSOCIATE-RQ", data, "association", tuple(lengths), tuple(items))


def _map_sub_items(
    data: bytes, pos: int, end: int, lengths: list[Field], items: list[tuple[int, int]]
) -> None:
    while pos + 4 <= end:
        sub_type = data[pos]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        lengths.append(Field(pos + 2, 2, True))
        items.append((pos, pos + 4 + length))
        inner = _INNER_LENGTHS.get(sub_type)
        if inner is not None:
            lengths.append(Field(pos + inner, 2, True))
        pos += 4 + length


# -------------------------------------------------------------------- command sets
def command_set(**values: object) -> bytes:
    """A command set encoded by pydicom: Implicit VR Little Endian with its group length
    first, as PS3.7 §6.3.1 has it."""
    return encode_implicit(_dataset(values), group_length=True)


def _dataset(values: dict[str, object]) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def encode_implicit(ds: Dataset, group_length: bool = False) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    body = buffer.getvalue()
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body if group_length else body


COMMANDS: dict[str, dict[str, object]] = {
    "C-ECHO-RQ": dict(
        AffectedSOPClassUID=VERIFICATION, CommandField=0x30, MessageID=1, CommandDataSetType=0x0101
    ),
    "C-STORE-RQ": dict(
        AffectedSOPClassUID=CT_STORAGE,
        CommandField=0x01,
        MessageID=2,
        Priority=0,
        CommandDataSetType=0,
        AffectedSOPInstanceUID="1.2.826.0.1.3680043.9.9999.2.1",
        MoveOriginatorApplicationEntityTitle="MOVER",
        MoveOriginatorMessageID=7,
    ),
    "C-FIND-RQ": dict(
        AffectedSOPClassUID=STUDY_ROOT_FIND,
        CommandField=0x20,
        MessageID=3,
        Priority=0,
        CommandDataSetType=0,
    ),
    "C-MOVE-RQ": dict(
        AffectedSOPClassUID=STUDY_ROOT_MOVE,
        CommandField=0x21,
        MessageID=4,
        MoveDestination="NOWHERE",
        Priority=0,
        CommandDataSetType=0,
    ),
    "C-GET-RQ": dict(
        AffectedSOPClassUID=STUDY_ROOT_GET,
        CommandField=0x10,
        MessageID=5,
        Priority=0,
        CommandDataSetType=0,
    ),
    "N-CREATE-RQ": dict(
        AffectedSOPClassUID=MPPS,
        CommandField=0x140,
        MessageID=6,
        CommandDataSetType=0,
        AffectedSOPInstanceUID="1.2.826.0.1.3680043.9.9999.3.1",
    ),
    "N-SET-RQ": dict(
        RequestedSOPClassUID=MPPS,
        CommandField=0x120,
        MessageID=7,
        CommandDataSetType=0,
        RequestedSOPInstanceUID="1.2.826.0.1.3680043.9.9999.3.1",
    ),
    "N-GET-RQ": dict(
        RequestedSOPClassUID=MPPS,
        CommandField=0x110,
        MessageID=8,
        CommandDataSetType=0x0101,
        RequestedSOPInstanceUID="1.2.826.0.1.3680043.9.9999.3.1",
        AttributeIdentifierList=[0x00100010, 0x00100020],
    ),
    "N-ACTION-RQ": dict(
        RequestedSOPClassUID=COMMITMENT,
        CommandField=0x130,
        MessageID=9,
        CommandDataSetType=0,
        RequestedSOPInstanceUID=COMMITMENT_INSTANCE,
        ActionTypeID=1,
    ),
    "C-CANCEL-RQ": dict(
        AffectedSOPClassUID=STUDY_ROOT_FIND,
        CommandField=0xFFF,
        MessageIDBeingRespondedTo=3,
        CommandDataSetType=0x0101,
    ),
    "C-STORE-RSP": dict(
        AffectedSOPClassUID=CT_STORAGE,
        CommandField=0x8001,
        MessageIDBeingRespondedTo=1,
        CommandDataSetType=0x0101,
        Status=0xC000,
        ErrorComment="cannot understand",
        OffendingElement=[0x00080018],
    ),
}


@cache
def command_seeds() -> tuple[Seed, ...]:
    return tuple(command_seed(name, command_set(**values)) for name, values in COMMANDS.items())


def command_seed(name: str, data: bytes) -> Seed:
    """A command set with each element's length field and extent mapped."""
    lengths, items = [], []
    pos = 0
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, pos + 4)
        lengths.append(Field(pos + 4, 4, False))
        items.append((pos, pos + 8 + length))
        pos += 8 + length
    return Seed(name, data, "command", tuple(lengths), tuple(items))


@cache
def identifier_seeds() -> dict[str, Seed]:
    """The small data sets that requests other than C-STORE carry, by command name."""
    reference = _dataset(
        {"ReferencedSOPClassUID": CT_STORAGE, "ReferencedSOPInstanceUID": "1.2.3.4"}
    )
    identifiers = {
        "C-FIND-RQ": dict(
            QueryRetrieveLevel="STUDY",
            PatientName="A*",
            StudyInstanceUID="",
            StudyDate="20200101-",
            ModalitiesInStudy="CT",
        ),
        "C-MOVE-RQ": dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3"),
        "C-GET-RQ": dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3"),
        "N-CREATE-RQ": dict(
            PerformedProcedureStepStatus="IN PROGRESS", PatientName="A^B", Modality="CT"
        ),
        "N-SET-RQ": dict(PerformedProcedureStepStatus="COMPLETED"),
        "N-ACTION-RQ": dict(TransactionUID="1.2.3.5", ReferencedSOPSequence=[reference]),
    }
    return {
        name: dataset_seed_of(name, encode_implicit(_dataset(values)), ImplicitVRLittleEndian)
        for name, values in identifiers.items()
    }


# --------------------------------------------------------------------- data sets
@cache
def dataset_seeds() -> tuple[Seed, ...]:
    """The corpus: each file's data set as it lies after the file meta, mapped."""
    paths = [Path(get_testdata_file(name)) for name in CORPUS_FILES]
    charset = {Path(p).name: Path(p) for p in get_charset_files()}
    paths += [charset[name] for name in CHARSET_FILES]
    return tuple(corpus_seed(path) for path in paths)


def corpus_seed(path: Path) -> Seed:
    raw = path.read_bytes()
    parsed = pydicom.dcmread(path, stop_before_pixels=True)
    syntax = str(parsed.file_meta.get("TransferSyntaxUID", "")) or ImplicitVRLittleEndian
    data = raw[_meta_end(raw) :]
    deflated = syntax == DeflatedExplicitVRLittleEndian
    if deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    seed = dataset_seed_of(path.name, data, syntax)
    return Seed(
        seed.name,
        seed.data,
        seed.kind,
        seed.lengths,
        seed.items,
        seed.vrs,
        syntax,
        str(parsed.get("SOPClassUID", "")),
        str(parsed.get("SOPInstanceUID", "")),
        deflated,
    )


def dataset_seed_of(name: str, data: bytes, syntax: str) -> Seed:
    explicit = syntax != ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian
    mapper = DatasetMapper(data, explicit, little)
    mapper.walk(0, len(data), depth=0)
    return Seed(
        name,
        data,
        "dataset",
        tuple(mapper.lengths),
        tuple(mapper.items),
        tuple(mapper.vrs),
        syntax,
    )


def _meta_end(raw: bytes) -> int:
    """Where the data set starts: after the preamble and the group 0002 elements (0 for a
    file without a preamble)."""
    if raw[128:132] != b"DICM":
        return 0
    pos = 132
    while raw[pos : pos + 2] == b"\x02\x00":
        if raw[pos + 4 : pos + 6] in LONG_VRS:
            pos += 12 + struct.unpack_from("<I", raw, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", raw, pos + 6)[0]
    return pos


class DatasetMapper:
    """Walks a pristine data set and notes where its element headers are, and which
    byte ranges are its top-level elements. It only maps seeds, so it gives up quietly
    on anything odd rather than judging it."""

    def __init__(self, data: bytes, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.order = "<" if little else ">"
        self.big = not little
        self.lengths: list[Field] = []
        self.items: list[tuple[int, int]] = []
        self.vrs: list[int] = []
        self.top: list[tuple[int, int, int]] = []  # start, header size, end

    def _tag(self, pos: int) -> int:
        group, elem = struct.unpack_from(self.order + "HH", self.data, pos)
        return (group << 16) | elem

    def walk(self, pos: int, end: int, depth: int) -> int:
        end = min(end, len(self.data))
        while pos + 8 <= end and depth < 8:
            start = pos
            tag = self._tag(pos)
            if tag == ITEM_END:
                return pos + 8
            if self.explicit and tag >> 16 != 0xFFFE:
                vr = self.data[pos + 4 : pos + 6]
                self.vrs.append(pos + 4)
                if vr in LONG_VRS:
                    field, pos = Field(pos + 8, 4, self.big), pos + 12
                else:
                    field, pos = Field(pos + 6, 2, self.big), pos + 8
            else:
                vr = _implicit_vr(tag)
                field, pos = Field(pos + 4, 4, self.big), pos + 8
            self.lengths.append(field)
            header = pos - start
            length = field.read(self.data)
            if length == UNDEFINED:
                pos = self._items(pos, depth)
            else:
                if vr == b"SQ":
                    self._items_in(pos, pos + length, depth)
                pos += length
            if pos > end:
                return end
            self.items.append((start, pos))
            if depth == 0:
                self.top.append((start, header, pos))
        return pos

    def _items(self, pos: int, depth: int) -> int:
        """Items of an undefined-length sequence (or pixel data fragments)."""
        while pos + 8 <= len(self.data):
            tag = self._tag(pos)
            field = Field(pos + 4, 4, self.big)
            self.lengths.append(field)
            length = field.read(self.data)
            start, pos = pos, pos + 8
            if tag == SEQUENCE_END:
                return pos
            if length == UNDEFINED:
                pos = self.walk(pos, len(self.data), depth + 1)
            else:
                pos += length
            self.items.append((start, pos))
        return pos

    def _items_in(self, pos: int, end: int, depth: int) -> None:
        """Items of a defined-length sequence."""
        end = min(end, len(self.data))
        while pos + 8 <= end:
            field = Field(pos + 4, 4, self.big)
            self.lengths.append(field)
            length = field.read(self.data)
            start, pos = pos, pos + 8
            if length == UNDEFINED:
                pos = self.walk(pos, end, depth + 1)
            else:
                self.walk(pos, pos + length, depth + 1)
                pos += length
            self.items.append((start, pos))


def _implicit_vr(tag: int) -> bytes:
    try:
        return dictionary_VR(tag).encode()
    except KeyError:
        return b"UN"


# -------------------------------------------------------------------- P-DATA-TF
def p_data_seed(name: str, context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> Seed:
    """The P-DATA-TF PDUs of one message, with PDU and PDV lengths, context IDs and
    message control headers mapped."""
    pdus = pdu.p_data_pdus(context_id, command, True, max_pdu)
    if dataset:
        pdus += pdu.p_data_pdus(context_id, dataset, False, max_pdu)
    lengths, items = [], []
    pos = 0
    for one in pdus:
        lengths += [Field(pos + 2, 4, True), Field(pos + 6, 4, True)]
        lengths += [Field(pos + 10, 1, True), Field(pos + 11, 1, True)]  # context, control
        items.append((pos, pos + len(one)))
        pos += len(one)
    return Seed(name, b"".join(pdus), "p-data", tuple(lengths), tuple(items))


def short_pdu_seeds() -> list[Seed]:
    return [
        Seed("A-RELEASE-RQ", pdu.release_rq(), "", (Field(2, 4, True),)),
        Seed("A-ABORT", pdu.abort(), "", (Field(2, 4, True),)),
    ]
