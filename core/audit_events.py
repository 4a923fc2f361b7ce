"""Which of the box's events becomes which DICOM PS3.15 audit message (A.5.3).

Instances received on an association are counted as they arrive and described when it
ends: PS3.15 describes a transfer ("DICOM Instances Transferred") per patient, with its
studies and their SOP classes counted, not one message per instance; a CT series would
otherwise make thousands of messages for one event.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dicombox.core import audit_messages as am
from dicombox.core.audit_messages import ActiveParticipant, AuditMessage, Code, ParticipantObject
from dicombox.core.audit_subjects import AuditSubjects
from dicombox.core.events import Event

# A-ASSOCIATE-RJ by the service user because of who called whom (PS3.8 §9.3.4):
# calling AE not recognized (3), called AE not recognized (7). The others (too many
# associations, an unsupported protocol) say nothing about who may talk to the box.
SOURCE_SERVICE_USER = 1
WHO_REJECTIONS = {3, 7}
PERMISSION = Code("Permission", "99DICOMBOX", "Service permission")
JOB = Code("Job", "99DICOMBOX", "Job")
IDLE_TALLY_S = 60.0  # instances stored outside an association are described this late


def _transfer_kind(begin: bool) -> tuple[Code, str]:
    """Begin Transferring is an Execute; the transfer itself a Read of what the box holds."""
    return (am.BEGIN_TRANSFERRING, "E") if begin else (am.INSTANCES_TRANSFERRED, "R")


@dataclass(frozen=True)
class Site:
    """The box as it names itself in its messages."""

    ae_title: str
    host: str
    pid: int
    remotes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (AE, host)

    def host_of(self, ae_title: str) -> str:
        return next((h for ae, h in self.remotes.values() if ae == ae_title), "")


@dataclass(frozen=True)
class Audited:
    """One message, what its local record adds (study, patient, count), and the record's
    event name when it is not the event's own (the store tally at association end)."""

    message: AuditMessage
    fields: dict[str, Any] = field(default_factory=dict)
    event: str = ""


@dataclass
class _Received:
    """What one association (or one caller, outside associations) has sent so far."""

    calling_ae: str
    started: float
    counts: dict[tuple[str, str, bool], Counter[str]] = field(default_factory=dict)
    unplaced: list[tuple[str, str, str]] = field(default_factory=list)  # class, uid, action
    failures: list[str] = field(default_factory=list)


class AuditEvents:
    def __init__(self, site: Site, subjects: AuditSubjects | None) -> None:
        self.site = site
        self.subjects = subjects
        self._received: dict[str, _Received] = {}
        # Guards _received alone: building messages looks things up in the index, and a
        # C-STORE's own count must never wait for that.
        self._lock = threading.Lock()
        self._builders: dict[str, Callable[[dict[str, Any], float], list[Audited]]] = {
            "application.started": lambda f, t: self._application(f, t, am.APPLICATION_START),
            "application.stopped": lambda f, t: self._application(f, t, am.APPLICATION_STOP),
            "association.rejected": self._rejected,
            "association.ended": self._association_ended,
            "security.refused": self._refused,
            "security.tls_failed": self._tls_failed,
            "instance.stored": lambda f, t: self._stored(f, t, ok=True),
            "instance.rejected": lambda f, t: self._stored(f, t, ok=False),
            "instance.deleted": self._deleted,
            "query.received": self._query,
            "forward.started": lambda f, t: self._forward(f, t, begin=True),
            "forward.done": lambda f, t: self._forward(f, t, begin=False),
            "retrieve.started": lambda f, t: self._retrieve(f, t, begin=True),
            "retrieve.done": lambda f, t: self._retrieve(f, t, begin=False),
            "media.burned": self._burned,
            "print.done": self._printed,
            "print.failed": self._printed,
            "web.login": self._login,
            "web.login_failed": self._login,
            "web.user_added": self._account,
            "web.user_removed": self._account,
            "audit.read": self._log_used,
        }

    def messages(self, event: Event) -> list[Audited]:
        build = self._builders.get(event.topic)
        found = build(event.fields, event.time) if build else []
        return found + self._idle(event.time)

    def pending(self) -> list[Audited]:
        """Describe every transfer still being counted (the process is ending)."""
        now = time.time()
        with self._lock:
            keys = list(self._received)
        return [m for key in keys for m in self._describe_received(key, {}, now)]

    # ------------------------------------------------------------------ participants
    def _box(self, requestor: bool, role: Code | None = None, ae: str = "") -> ActiveParticipant:
        return ActiveParticipant(
            ae or self.site.ae_title, requestor, role, self.site.host, str(self.site.pid)
        )

    def _peer(self, f: dict[str, Any], requestor: bool, role: Code | None) -> ActiveParticipant:
        ae = str(f.get("calling_ae") or "")
        return ActiveParticipant(ae, requestor, role, str(f.get("peer_host") or ""))

    # ---------------------------------------------------------------- application
    def _application(self, f: dict[str, Any], when: float, kind: Code) -> list[Audited]:
        launcher = str(f.get("user") or "")
        people = [self._box(not launcher, am.APPLICATION)]
        if launcher:
            people.append(ActiveParticipant(launcher, True, am.APPLICATION_LAUNCHER))
        message = AuditMessage(
            am.APPLICATION_ACTIVITY, "E", when=when, types=(kind,), participants=tuple(people)
        )
        return [Audited(message)]

    def _log_used(self, f: dict[str, Any], when: float) -> list[Audited]:
        log = ParticipantObject(
            str(f.get("log") or ""),
            am.URI,
            am.SYSTEM_OBJECT,
            am.ROLE_SECURITY_RESOURCE,
            name="Security Audit Log",
        )
        reader = ActiveParticipant(str(f.get("user") or "-"), True, host=self.site.host)
        message = AuditMessage(
            am.AUDIT_LOG_USED, "R", when=when, participants=(reader,), objects=(log,)
        )
        return [Audited(message)]

    # ------------------------------------------------------------------- security
    def _rejected(self, f: dict[str, Any], when: float) -> list[Audited]:
        if f.get("source") != SOURCE_SERVICE_USER or f.get("diagnostic") not in WHO_REJECTIONS:
            return []
        node = f"{f.get('calling_ae', '')}@{f.get('peer_host', '')}"
        return self._alert(f, when, am.NODE_AUTHENTICATION, node, am.NODE_ID, "reason")

    def _tls_failed(self, f: dict[str, Any], when: float) -> list[Audited]:
        node = f"{f.get('peer_host', '')}:{f.get('peer_port', '')}"
        return self._alert(f, when, am.NODE_AUTHENTICATION, node, am.NODE_ID, "why")

    def _refused(self, f: dict[str, Any], when: float) -> list[Audited]:
        permission = str(f.get("permission") or "")
        return self._alert(f, when, am.USE_OF_RESTRICTED_FUNCTION, permission, PERMISSION, "why")

    def _alert(
        self, f: dict[str, Any], when: float, kind: Code, subject: str, id_type: Code, why_key: str
    ) -> list[Audited]:
        """A Security Alert about ``subject`` (a node, a permission) the caller was denied."""
        why = str(f.get(why_key) or "")
        resource = ParticipantObject(
            subject,
            id_type,
            am.SYSTEM_OBJECT,
            am.ROLE_SECURITY_RESOURCE,
            details=(("Alert Description", why.encode()),),
        )
        message = AuditMessage(
            am.SECURITY_ALERT,
            "E",
            am.MINOR_FAILURE,
            when,
            (kind,),
            why,
            (self._peer(f, True, None), self._box(False, ae=str(f.get("called_ae") or ""))),
            (resource,),
        )
        return [Audited(message, {"outcome": am.MINOR_FAILURE})]

    def _login(self, f: dict[str, Any], when: float) -> list[Audited]:
        failed = "role" not in f  # web.login_failed names the user only
        outcome = am.MINOR_FAILURE if failed else am.SUCCESS
        user = ActiveParticipant(str(f.get("user") or ""), True, user_name=str(f.get("role") or ""))
        message = AuditMessage(
            am.USER_AUTHENTICATION,
            "E",
            outcome,
            when,
            (am.LOGIN,),
            "wrong name or password" if failed else "",
            (user, self._box(False)),
        )
        return [Audited(message, {"outcome": outcome})]

    def _account(self, f: dict[str, Any], when: float) -> list[Audited]:
        added = "role" in f  # web.user_added names the role given
        what = f"console user added as {f['role']}" if added else "console user removed"
        account = ParticipantObject(
            str(f.get("name") or ""),
            am.USER_IDENTIFIER,
            am.PERSON,
            am.ROLE_SECURITY_USER,
            details=(("Alert Description", what.encode()),),
        )
        admin = ActiveParticipant(str(f.get("user") or ""), True)
        message = AuditMessage(
            am.SECURITY_ALERT,
            "E",
            when=when,
            types=(am.SECURITY_ROLES_CHANGED,),
            outcome_description=what,
            participants=(admin, self._box(False)),
            objects=(account,),
        )
        return [Audited(message)]

    # ------------------------------------------------------------------ transfers
    def _per_patient(
        self,
        studies: list[dict[str, Any]],
        build: Callable[[tuple[ParticipantObject, ...]], AuditMessage],
    ) -> list[Audited]:
        """One message per patient (PS3.15: a transfer message names a single patient),
        naming its studies with their SOP classes counted."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for study in studies:
            key = (str(study.get("patient_id") or ""), str(study.get("patient_name") or ""))
            groups.setdefault(key, []).append(study)
        found = []
        for (patient_id, patient_name), group in groups.items():
            objects = [
                ParticipantObject(
                    s["study_instance_uid"],
                    am.STUDY_INSTANCE_UID,
                    am.SYSTEM_OBJECT,
                    am.ROLE_REPORT,
                    sop_classes=tuple(dict(s.get("sop_classes") or {}).items()),
                    accession=str(s.get("accession_number") or ""),
                )
                for s in group
                if s.get("study_instance_uid")
            ]
            known = bool(objects)  # a study the index knows has a patient row
            if known:
                objects.append(
                    ParticipantObject(
                        patient_id, am.PATIENT_NUMBER, am.PERSON, am.ROLE_PATIENT, patient_name
                    )
                )
            message = build(tuple(objects))
            count = sum(sum(dict(s.get("sop_classes") or {}).values()) for s in group)
            fields: dict[str, Any] = {"outcome": message.outcome}
            if known:
                fields |= {"patient_id": patient_id, "patient_name": patient_name}
                fields["studies"] = [s["study_instance_uid"] for s in group]
            if count:
                fields["count"] = count
            found.append(Audited(message, fields))
        return found

    def _studies(self, f: dict[str, Any]) -> list[dict[str, Any]]:
        """The studies an event is about: its own summary, or one made from its
        (SOP Class UID, SOP Instance UID) pairs or Study Instance UIDs."""
        if isinstance(f.get("study_summary"), list):
            return list(f["study_summary"])
        if self.subjects is None:
            return []
        if isinstance(f.get("instances"), list):
            return self.subjects.summarize((str(c), str(u)) for c, u in f["instances"])
        if isinstance(f.get("studies"), list):
            return self.subjects.describe({str(u): Counter() for u in f["studies"]})
        return []

    def _forward(self, f: dict[str, Any], when: float, begin: bool) -> list[Audited]:
        ae, host = self.site.remotes.get(str(f.get("remote") or ""), (str(f.get("remote")), ""))
        people = (
            self._box(True, am.SOURCE),
            ActiveParticipant(ae, False, am.DESTINATION, host),
        )
        event_id, action = _transfer_kind(begin)
        return self._per_patient(
            self._studies(f),
            lambda objects: AuditMessage(
                event_id, action, when=when, participants=people, objects=objects
            ),
        )

    def _retrieve(self, f: dict[str, Any], when: float, begin: bool) -> list[Audited]:
        target, caller = str(f.get("target") or ""), str(f.get("calling_ae") or "")
        get = f.get("verb") == "C-GET"
        people = [
            self._box(False, am.SOURCE),
            ActiveParticipant(target, get, am.DESTINATION, self.site.host_of(target)),
        ]
        if not get:  # C-MOVE: whoever asked is a third party
            people.append(ActiveParticipant(caller, True, None, str(f.get("peer_host") or "")))
        outcome, description = am.SUCCESS, ""
        if not begin:
            failed, done = int(f.get("failed") or 0), int(f.get("completed") or 0)
            warned = int(f.get("warning") or 0)
            if failed or warned:
                outcome = am.SERIOUS_FAILURE if done + warned == 0 else am.MINOR_FAILURE
                description = f"{done} completed, {failed} failed, {warned} with warnings"
        event_id, action = _transfer_kind(begin)
        return self._per_patient(
            self._studies(f),
            lambda objects: AuditMessage(
                event_id, action, outcome, when, (), description, tuple(people), objects
            ),
        )

    def _burned(self, f: dict[str, Any], when: float) -> list[Audited]:
        disc = ActiveParticipant("disc", False, am.DESTINATION_MEDIA)
        people = (self._box(True, am.SOURCE), disc)
        return self._per_patient(
            self._studies(f),
            lambda objects: AuditMessage(
                am.EXPORT, "R", when=when, participants=people, objects=objects
            ),
        )

    def _printed(self, f: dict[str, Any], when: float) -> list[Audited]:
        error = str(f.get("error") or "")
        outcome = am.SERIOUS_FAILURE if error else am.SUCCESS
        printer = ActiveParticipant(
            str(f.get("printer") or ""), False, am.DESTINATION_MEDIA, media_type=am.FILM
        )
        job = f.get("job")
        jobs = (ParticipantObject(str(job), JOB, am.SYSTEM_OBJECT, am.ROLE_JOB),) if job else ()
        people = (self._box(True, am.SOURCE), printer)

        def build(objects: tuple[ParticipantObject, ...]) -> AuditMessage:
            return AuditMessage(am.EXPORT, "R", outcome, when, (), error, people, jobs + objects)

        # Films of stored studies name their patient; films a modality printed to the
        # box (the print SCP) name only the job.
        found = self._per_patient(self._studies(f), build)
        return found or [Audited(build(()), {"outcome": outcome})]

    def _deleted(self, f: dict[str, Any], when: float) -> list[Audited]:
        study = str(f.get("study_instance_uid") or "")
        uid = str(f.get("sop_instance_uid") or "")
        subject = (
            ParticipantObject(study, am.STUDY_INSTANCE_UID, am.SYSTEM_OBJECT, am.ROLE_REPORT)
            if study
            else ParticipantObject(uid, am.SOP_INSTANCE_UID, am.SYSTEM_OBJECT, am.ROLE_REPORT)
        )
        message = AuditMessage(
            am.INSTANCES_ACCESSED,
            "D",
            when=when,
            outcome_description=str(f.get("reason") or ""),
            participants=(self._box(True, am.APPLICATION),),
            objects=(subject,),
        )
        return [Audited(message)]

    def _query(self, f: dict[str, Any], when: float) -> list[Audited]:
        details = []
        if f.get("transfer_syntax"):
            details.append(("TransferSyntax", str(f["transfer_syntax"]).encode()))
        query = ParticipantObject(
            str(f.get("sop_class_uid") or ""),
            am.SOP_CLASS_UID,
            am.SYSTEM_OBJECT,
            am.ROLE_REPORT,
            query=base64.b64decode(str(f.get("identifier") or "")),
            details=tuple(details),
        )
        message = AuditMessage(
            am.QUERY,
            "E",
            when=when,
            participants=(
                self._peer(f, True, am.SOURCE),
                self._box(False, am.DESTINATION, str(f.get("called_ae") or "")),
            ),
            objects=(query,),
        )
        return [Audited(message)]

    # ------------------------------------------------- instances received, counted
    def _stored(self, f: dict[str, Any], when: float, ok: bool) -> list[Audited]:
        caller = str(f.get("calling_ae") or "")
        key = str(f.get("association") or "") or f"caller:{caller}"
        with self._lock:  # association threads count at once; a count is a few dict steps
            self._count(key, caller, f, when, ok)
        return []

    def _count(self, key: str, caller: str, f: dict[str, Any], when: float, ok: bool) -> None:
        received = self._received.setdefault(key, _Received(caller, when))
        # C: new to the box; U: a copy it held was replaced or added to; R: it held
        # the instance already and kept its first copy (PS3.15 A.5.3.4).
        action = "C"
        if f.get("duplicate"):
            action = "U" if f.get("path") else "R"
        study = str(f.get("study_instance_uid") or "")
        sop_class = str(f.get("sop_class_uid") or "")
        if ok and not study:
            received.unplaced.append((sop_class, str(f.get("sop_instance_uid") or ""), action))
        else:
            received.counts.setdefault((study, action, ok), Counter())[sop_class] += 1
        if not ok and len(received.failures) < 3 and f.get("reason"):
            received.failures.append(str(f["reason"]))

    def _association_ended(self, f: dict[str, Any], when: float) -> list[Audited]:
        return self._describe_received(str(f.get("association") or ""), f, when)

    def _idle(self, now: float) -> list[Audited]:
        with self._lock:
            stale = [
                key
                for key, r in self._received.items()
                if key.startswith("caller:") and now - r.started > IDLE_TALLY_S
            ]
        return [m for key in stale for m in self._describe_received(key, {}, now)]

    def _describe_received(self, key: str, f: dict[str, Any], when: float) -> list[Audited]:
        with self._lock:  # only the tally is taken under the lock; the index lookups not
            received = self._received.pop(key, None)
        if received is None:
            return []
        if received.unplaced and self.subjects is not None:
            study_of = self.subjects.studies_of(uid for _, uid, _ in received.unplaced)
            for sop_class, uid, action in received.unplaced:
                group = (study_of.get(uid, ""), action, True)
                received.counts.setdefault(group, Counter())[sop_class] += 1
        source = ActiveParticipant(
            received.calling_ae, True, am.SOURCE, str(f.get("peer_host") or "")
        )
        people = (source, self._box(False, am.DESTINATION, str(f.get("called_ae") or "")))
        by_kind: dict[tuple[str, bool], dict[str, Counter[str]]] = {}
        for (study, action, ok), classes in received.counts.items():
            by_kind.setdefault((action, ok), {})[study] = classes
        described = []
        for (action, ok), studies in by_kind.items():
            summary = self.subjects.describe(studies) if self.subjects else []
            outcome = am.SUCCESS if ok else am.MINOR_FAILURE
            why = "" if ok else "; ".join(received.failures)
            for audited in self._per_patient(
                summary,
                lambda objects, a=action, o=outcome, w=why: AuditMessage(
                    am.INSTANCES_TRANSFERRED, a, o, when, (), w, people, objects
                ),
            ):
                fields = {
                    "calling_ae": received.calling_ae,
                    **({"peer_host": f["peer_host"]} if f.get("peer_host") else {}),
                    "association": "" if key.startswith("caller:") else key,
                    "action": action,
                    **audited.fields,
                }
                described.append(Audited(audited.message, fields, "instances-transferred"))
        return described
