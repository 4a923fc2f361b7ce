"""DICOM PS3.15 Annex A.5 audit messages: the codes, the message model and its XML.

The XML follows the DICOM Audit Message schema (A.5.1): coded values carry ``csd-code``,
``codeSystemName`` and ``originalText``; the elements come in the schema's order.
Which box event becomes which message is decided in ``audit_events``.
"""

from __future__ import annotations

import base64
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Code:
    """A coded value: (code, coding scheme, meaning)."""

    code: str
    system: str
    meaning: str


# Audit Event ID (CID 400)
APPLICATION_ACTIVITY = Code("110100", "DCM", "Application Activity")
AUDIT_LOG_USED = Code("110101", "DCM", "Audit Log Used")
BEGIN_TRANSFERRING = Code("110102", "DCM", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = Code("110103", "DCM", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = Code("110104", "DCM", "DICOM Instances Transferred")
EXPORT = Code("110106", "DCM", "Export")
QUERY = Code("110112", "DCM", "Query")
SECURITY_ALERT = Code("110113", "DCM", "Security Alert")
USER_AUTHENTICATION = Code("110114", "DCM", "User Authentication")

# Audit Event Type Code (CID 401)
APPLICATION_START = Code("110120", "DCM", "Application Start")
APPLICATION_STOP = Code("110121", "DCM", "Application Stop")
LOGIN = Code("110122", "DCM", "Login")
NODE_AUTHENTICATION = Code("110126", "DCM", "Node Authentication")
USE_OF_RESTRICTED_FUNCTION = Code("110132", "DCM", "Use of Restricted Function")
SECURITY_ROLES_CHANGED = Code("110136", "DCM", "Security Roles Changed")

# Audit Active Participant Role ID Code (CID 402)
APPLICATION = Code("110150", "DCM", "Application")
APPLICATION_LAUNCHER = Code("110151", "DCM", "Application Launcher")
DESTINATION = Code("110152", "DCM", "Destination Role ID")
SOURCE = Code("110153", "DCM", "Source Role ID")
DESTINATION_MEDIA = Code("110154", "DCM", "Destination Media")

# Media Type Code (CID 405)
FILM = Code("110010", "DCM", "Film")

# Participant Object ID Type Code (A.5.1.2.4 and CID 404)
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
USER_IDENTIFIER = Code("11", "RFC-3881", "User Identifier")
URI = Code("12", "RFC-3881", "URI")
STUDY_INSTANCE_UID = Code("110180", "DCM", "Study Instance UID")
SOP_CLASS_UID = Code("110181", "DCM", "SOP Class UID")
NODE_ID = Code("110182", "DCM", "Node ID")
# PS3.15 lets an implementation define ID type codes; DCM has none for a lone instance.
SOP_INSTANCE_UID = Code("SOPInstanceUID", "99DICOMBOX", "SOP Instance UID")

# EventOutcomeIndicator
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12

# ParticipantObjectTypeCode / ParticipantObjectTypeCodeRole (A.5.1.2.2)
PERSON, SYSTEM_OBJECT = "1", "2"
ROLE_PATIENT, ROLE_REPORT, ROLE_SECURITY_USER, ROLE_SECURITY_RESOURCE = "1", "3", "11", "13"
ROLE_JOB, ROLE_QUERY = "20", "24"


@dataclass(frozen=True)
class ActiveParticipant:
    user_id: str
    requestor: bool
    role: Code | None = None
    host: str = ""  # NetworkAccessPointID: a host name or an IP address
    alternative_id: str = ""  # e.g. the process id of the box
    user_name: str = ""
    media_type: Code | None = None  # MediaIdentifier, for a destination medium


@dataclass(frozen=True)
class ParticipantObject:
    object_id: str
    id_type: Code
    type_code: str = ""
    role: str = ""
    name: str = ""
    query: bytes | None = None  # base64-encoded in the XML, as the schema wants
    details: tuple[tuple[str, bytes], ...] = ()  # (type, value) pairs, base64 in the XML
    sop_classes: tuple[tuple[str, int], ...] = ()  # (SOP Class UID, number of instances)
    accession: str = ""


@dataclass(frozen=True)
class AuditMessage:
    event_id: Code
    action: str  # EventActionCode: C R U D E
    outcome: int = SUCCESS
    when: float = field(default_factory=time.time)
    types: tuple[Code, ...] = ()
    outcome_description: str = ""
    participants: tuple[ActiveParticipant, ...] = ()
    objects: tuple[ParticipantObject, ...] = ()


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": code.code, "codeSystemName": code.system, "originalText": code.meaning},
    )


def _event_time(when: float) -> str:
    """xsd:dateTime in UTC, unambiguous as A.5.2.5 asks."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{seconds}.{int(when % 1 * 1000):03d}Z"


def _host_type(host: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine name."""
    looks_ip = ":" in host or host.replace(".", "").isdigit()
    return "2" if looks_ip else "1"


def _participant(root: ET.Element, p: ActiveParticipant) -> None:
    attrs = {"UserID": p.user_id or "-"}
    if p.alternative_id:
        attrs["AlternativeUserID"] = p.alternative_id
    if p.user_name:
        attrs["UserName"] = p.user_name
    attrs["UserIsRequestor"] = "true" if p.requestor else "false"
    if p.host:
        # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; the peer is a.b.c.d.
        host = p.host.removeprefix("::ffff:")
        attrs["NetworkAccessPointID"] = host
        attrs["NetworkAccessPointTypeCode"] = _host_type(host)
    element = ET.SubElement(root, "ActiveParticipant", attrs)
    if p.role is not None:
        _coded(element, "RoleIDCode", p.role)
    if p.media_type is not None:
        _coded(ET.SubElement(element, "MediaIdentifier"), "MediaType", p.media_type)


def _object(root: ET.Element, o: ParticipantObject) -> None:
    attrs = {"ParticipantObjectID": o.object_id}
    if o.type_code:
        attrs["ParticipantObjectTypeCode"] = o.type_code
    if o.role:
        attrs["ParticipantObjectTypeCodeRole"] = o.role
    element = ET.SubElement(root, "ParticipantObjectIdentification", attrs)
    _coded(element, "ParticipantObjectIDTypeCode", o.id_type)
    if o.query is not None and not o.name:
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(o.query).decode()
    else:  # the schema wants a name or a query; an object without a name goes by its ID
        ET.SubElement(element, "ParticipantObjectName").text = o.name or o.object_id
    for kind, value in o.details:
        ET.SubElement(
            element,
            "ParticipantObjectDetail",
            {"type": kind, "value": base64.b64encode(value).decode()},
        )
    if o.sop_classes or o.accession:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        if o.accession:
            ET.SubElement(description, "Accession", {"Number": o.accession})
        for uid, count in o.sop_classes:
            ET.SubElement(description, "SOPClass", {"UID": uid, "NumberOfInstances": str(count)})


def to_xml(message: AuditMessage, source_id: str) -> str:
    """The message as an ``AuditMessage`` document (no XML declaration: it travels inside
    a JSON line and a syslog frame, both UTF-8)."""
    root = ET.Element("AuditMessage")
    event = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": message.action,
            "EventDateTime": _event_time(message.when),
            "EventOutcomeIndicator": str(message.outcome),
        },
    )
    _coded(event, "EventID", message.event_id)
    for code in message.types:
        _coded(event, "EventTypeCode", code)
    if message.outcome_description:
        ET.SubElement(event, "EventOutcomeDescription").text = message.outcome_description
    for participant in message.participants:
        _participant(root, participant)
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": source_id})
    # 4: an application server process (A.5.1.2.1)
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})
    for participant_object in message.objects:
        _object(root, participant_object)
    for element in root.iter():  # peers' text (reasons, names) may hold control characters
        if element.text:
            element.text = _xml_safe(element.text)
        for key, value in element.attrib.items():
            element.attrib[key] = _xml_safe(value)
    return ET.tostring(root, encoding="unicode")


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """Without the characters XML 1.0 cannot hold, which would make a collector refuse
    the whole message."""
    return _NOT_XML.sub("?", text)
