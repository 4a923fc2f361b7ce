"""The C-STORE SCP: each data set streams into the store while it arrives, and the core's
ingest decides the status once it is whole (0000 only when durable and indexed)."""

from __future__ import annotations

from collections.abc import Iterator

from dicombox.core.box import Box
from dicombox.core.ingest import SUCCESS, Arrival, Ingest, Refused
from dicombox.core.net.service import Reply, Request
from dicombox.core.store import IncomingFile


def _arrival(request: Request) -> Arrival:
    command = request.command
    return Arrival(
        transfer_syntax=request.context.transfer_syntax,
        source_ae=request.peer.calling_ae,
        sop_class_uid=command.AffectedSOPClassUID or request.context.abstract_syntax,
        sop_instance_uid=command.AffectedSOPInstanceUID or "",
        association=request.peer.association_id,
    )


class StorageSCP:
    def __init__(self, box: Box) -> None:
        self.ingest = Ingest(box)

    def open_sink(self, request: Request) -> IncomingFile | Refused:
        """The DatasetSink of a C-STORE-RQ: where its data set goes while it arrives."""
        return self.ingest.open(_arrival(request))

    def handle(self, request: Request) -> Iterator[Reply]:
        arrival = _arrival(request)
        outcome = self.ingest.take(request.dataset, arrival)
        fields = {}
        if outcome.comment and outcome.status != SUCCESS:
            fields["ErrorComment"] = outcome.comment[:64]
        try:
            yield Reply(outcome.status, fields=fields)
        finally:
            # The answer is on its way (or the peer has gone): the announcement, and the
            # temporary file for the next data set, overlap the sender's next request
            # instead of delaying an answer.
            self.ingest.announce(outcome, arrival)
            self.ingest.prepare()
