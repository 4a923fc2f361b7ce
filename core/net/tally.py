"""What one association did, counted for the line the log gets when it ends.

The host counts DIMSE requests by command and by the class of the status that finally
answered them (PS3.7 Annex C), without knowing which service answered: "C-STORE 200
success, 2 failed; C-FIND 1 success, 14 matches". A handler may add a few words of its
own to a reply (``Reply.summary``), for what statuses cannot say.
"""

from __future__ import annotations

from collections import Counter

from dicombox.core.net import commands

PENDING_STATUSES = (0xFF00, 0xFF01)
CANCEL_STATUS = 0xFE00
WARNING_STATUSES = (0x0001, 0x0107, 0x0116)
CLASS_ORDER = ("success", "warning", "failed", "cancelled")
# A pending response carries what it means by the command's definition (PS3.7 9.1.2):
# each one to a C-FIND is a match; elsewhere it only says the operation goes on.
# (one word, then the plural)
PENDING_WORDS = {commands.C_FIND_RQ: ("match", "matches")}
MAX_NOTES = 8  # distinct handler summaries kept; the rest are only counted


def status_class(status: int) -> str:
    """success, warning, failed, cancelled or pending (PS3.7 C.1)."""
    if status == 0x0000:
        return "success"
    if status in PENDING_STATUSES:
        return "pending"
    if status == CANCEL_STATUS:
        return "cancelled"
    if status in WARNING_STATUSES or status & 0xF000 == 0xB000:
        return "warning"
    return "failed"


def command_name(field: int) -> str:
    """A request's name without "-RQ" (C-STORE), or the field's number if unknown."""
    name = commands.COMMAND_NAMES.get(field & 0x7FFF)
    return name.removesuffix("-RQ") if name else f"command 0x{field:04X}"


class AssociationTally:
    def __init__(self) -> None:
        self._received: Counter[int] = Counter()  # requests from the peer, by command
        self._answered: dict[int, Counter[str]] = {}  # ... by the class of each response
        self._sent: dict[int, Counter[str]] = {}  # our requests to it, by its answers
        self._notes: Counter[str] = Counter()

    def received(self, field: int) -> None:
        """The peer sent a request (each one is answered, or counted unanswered)."""
        self._received[field] += 1

    def answered(self, field: int, status: int, summary: str = "") -> None:
        """We answered a request of command ``field`` with ``status``."""
        self._answered.setdefault(field, Counter())[status_class(status)] += 1
        if summary and (summary in self._notes or len(self._notes) < MAX_NOTES):
            self._notes[summary] += 1
        elif summary:
            self._notes[""] += 1  # more distinct summaries than the line keeps

    def answered_by_peer(self, field: int, status: int) -> None:
        """The peer answered a request we sent on this association (C-GET's C-STOREs,
        a commitment report); ``field`` is the response's or the request's."""
        self._sent.setdefault(field & 0x7FFF, Counter())[status_class(status)] += 1

    def summary(self) -> str:
        """What was done, in a few words; "nothing" when no request came."""
        parts = []
        for field in dict.fromkeys([*self._received, *self._answered]):
            classes = self._answered.get(field, Counter())
            words = [f"{classes[c]} {c}" for c in CLASS_ORDER if classes[c]]
            if classes["pending"]:
                count = classes["pending"]
                one, many = PENDING_WORDS.get(field, ("pending", "pending"))
                words.append(f"{count} {one if count == 1 else many}")
            final = sum(classes[c] for c in CLASS_ORDER)
            if self._received[field] > final:
                words.append(f"{self._received[field] - final} unanswered")
            parts.append(f"{command_name(field)} {', '.join(words)}")
        for field, classes in self._sent.items():
            words = [f"{classes[c]} {c}" for c in (*CLASS_ORDER, "pending") if classes[c]]
            parts.append(f"sent {command_name(field)} {', '.join(words)}")
        for note, count in self._notes.items():
            if note:
                parts.append(note if count == 1 else f"{note} (x{count})")
        if self._notes[""]:
            parts.append(f"{self._notes['']} more summaries")
        return "; ".join(parts) or "nothing"
