"""Which service answers which abstract syntax on which called AE title."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pynetdicom.presentation import PresentationContext

from dicombox.core.net.service import Service, SupportedContext

log = logging.getLogger("dicombox.net")


@dataclass(frozen=True)
class Offer:
    service: Service
    context: SupportedContext


class ServiceRegistry:
    def __init__(self, services: list[Service], default_ae: str) -> None:
        self.services = services
        self.default_ae = default_ae
        self._by_ae: dict[str, dict[str, Offer]] = {}
        self._contexts: dict[str, list[PresentationContext]] = {}
        for service in services:
            for title in service.ae_titles or (default_ae,):
                table = self._by_ae.setdefault(title, {})
                for context in service.contexts:
                    table.setdefault(context.abstract_syntax, Offer(service, context))

    def association_ended(self, association_id: str) -> None:
        """Tell the services that keep state per association that this one is over."""
        for service in self.services:
            if service.association_ended is not None:
                try:
                    service.association_ended(association_id)
                except Exception:  # one service's bug must not stop the others' cleanup
                    log.exception("%s: after association %s", service.name, association_id)

    @property
    def local_titles(self) -> set[str]:
        return set(self._by_ae) | {self.default_ae}

    def offers_for(self, called_ae: str) -> dict[str, Offer]:
        return self._by_ae.get(called_ae) or self._by_ae.get(self.default_ae, {})

    def acceptor_contexts(
        self, called_ae: str, proposed: list[PresentationContext]
    ) -> tuple[list[PresentationContext], dict[str, Offer]]:
        """The pynetdicom contexts to negotiate against, and the offers they came from,
        including promiscuous acceptance of unknown abstract syntaxes."""
        base = self.offers_for(called_ae)
        # Keyed by the table used, not the title asked for: with accept_any_called_ae a
        # peer cycling through made-up titles must not grow the cache.
        table = called_ae if called_ae in self._by_ae else self.default_ae
        if table not in self._contexts:  # building contexts validates every UID: do it once
            self._contexts[table] = [_context(o.context) for o in base.values()]
        offers = dict(base)
        contexts = list(self._contexts[table])
        for rq in proposed:
            uid = str(rq.abstract_syntax)
            if uid in offers:
                continue
            for service in self.services:
                titles = service.ae_titles or (self.default_ae,)
                if service.accepts_unknown and table in titles and service.accepts_unknown(uid):
                    # Both roles, as for the known classes: a C-GET may send it back.
                    ctx = SupportedContext(
                        uid, service.fallback_transfer_syntaxes, scu_role=True, scp_role=True
                    )
                    offers[uid] = Offer(service, ctx)
                    contexts.append(_context(ctx))
                    break
        return contexts, offers


def _context(supported: SupportedContext) -> PresentationContext:
    cx = PresentationContext()
    cx.abstract_syntax = supported.abstract_syntax
    cx.transfer_syntax = list(supported.transfer_syntaxes)
    cx.scu_role = supported.scu_role
    cx.scp_role = supported.scp_role
    return cx
