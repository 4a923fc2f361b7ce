"""Everything the web application works with, made once per running box."""

from __future__ import annotations

from dataclasses import dataclass, field

from dicombox.core.box import Box
from dicombox.plugins.web.accounts import Accounts
from dicombox.plugins.web.devices import Devices
from dicombox.plugins.web.feed import JobFeed
from dicombox.plugins.web.logbuffer import LogBuffer
from dicombox.plugins.web.sessions import LoginThrottle, SessionStore
from dicombox.plugins.web.settings import WebSection
from dicombox.plugins.web.thumbnails import Thumbnails
from dicombox.plugins.web.verbs import Verbs


@dataclass
class Console:
    box: Box
    settings: WebSection
    accounts: Accounts
    sessions: SessionStore
    throttle: LoginThrottle
    verbs: Verbs
    thumbnails: Thumbnails
    devices: Devices
    feed: JobFeed
    logs: LogBuffer = field(default_factory=LogBuffer)
    url: str = ""  # where it listens, once bound
    # Messages for a session's next page ("burn queued as job 12"), by its CSRF token.
    notes: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return self.settings.https

    @classmethod
    def of(cls, box: Box, settings: WebSection | None = None) -> Console:
        settings = settings or box.section("web")
        accounts = Accounts(box.index.engine)
        return cls(
            box=box,
            settings=settings,
            accounts=accounts,
            sessions=SessionStore(box.index.engine, accounts, settings.session_hours),
            throttle=LoginThrottle(settings.max_failed_logins, settings.lockout_s),
            verbs=Verbs(box),
            thumbnails=Thumbnails(box),
            devices=Devices(box),
            feed=JobFeed(box.bus),
        )
