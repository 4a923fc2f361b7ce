"""Who may associate with the box, and how many at once.

The limit on simultaneous associations holds across every network worker process: each
association takes one of ``max_associations`` slot files with a non-blocking ``flock``.
The kernel drops the lock when the holder exits, so a worker that dies frees its slots.
A slot file also names the host holding it, so that one host can be kept to its share
(``max_associations_per_host``).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from dicombox.core.config import SERVICE_ALIASES, Config, RemoteSection

# A-ASSOCIATE-RJ values (PS3.8 §9.3.4)
REJECTED_PERMANENT = 1
REJECTED_TRANSIENT = 2
SOURCE_SERVICE_USER = 1
SOURCE_PROVIDER_ACSE = 2
SOURCE_PROVIDER_PRESENTATION = 3
USER_NO_REASON = 1
USER_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
USER_CALLING_AE_NOT_RECOGNIZED = 3
USER_CALLED_AE_NOT_RECOGNIZED = 7
ACSE_PROTOCOL_VERSION_NOT_SUPPORTED = 2
PRESENTATION_LOCAL_LIMIT_EXCEEDED = 2

DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


@dataclass(frozen=True)
class Rejection:
    result: int
    source: int
    reason: int
    why: str


class AssociationPolicy:
    """Decides whether an A-ASSOCIATE-RQ may proceed, by AE titles and peer address."""

    def __init__(self, config: Config, local_titles: set[str]) -> None:
        self.config = config
        self.local_titles = local_titles

    def check(
        self, calling_ae: str, called_ae: str, peer_host: str, application_context: str
    ) -> Rejection | None:
        if application_context != DICOM_APPLICATION_CONTEXT:
            return Rejection(
                REJECTED_PERMANENT,
                SOURCE_SERVICE_USER,
                USER_APPLICATION_CONTEXT_NOT_SUPPORTED,
                f"application context {application_context} is not DICOM's",
            )
        net = self.config.network
        if not net.accept_any_called_ae and called_ae not in self.local_titles:
            return Rejection(
                REJECTED_PERMANENT,
                SOURCE_SERVICE_USER,
                USER_CALLED_AE_NOT_RECOGNIZED,
                f"called AE {called_ae!r} is none of ours ({', '.join(sorted(self.local_titles))})",
            )
        if not net.accept_unknown_callers:
            known = self.config.remote_by_ae(calling_ae)
            if not known:
                return Rejection(
                    REJECTED_PERMANENT,
                    SOURCE_SERVICE_USER,
                    USER_CALLING_AE_NOT_RECOGNIZED,
                    f"calling AE {calling_ae!r} is not a configured [[remote]]",
                )
            if net.check_caller_host and not any(_same_host(r.host, peer_host) for r in known):
                return Rejection(
                    REJECTED_PERMANENT,
                    SOURCE_SERVICE_USER,
                    USER_CALLING_AE_NOT_RECOGNIZED,
                    f"calling AE {calling_ae!r} came from {peer_host}, "
                    f"configured for {', '.join(r.host for r in known)}",
                )
        return None

    def permissions(self, calling_ae: str, peer_host: str) -> frozenset[str]:
        """What this caller may ask of the box (``[[remote]] services``): the union over
        the [[remote]]s with its AE title (those at its address, where the host is
        checked); ``unknown_caller_services`` when it is no [[remote]]."""
        known = remotes_of(self.config, calling_ae, peer_host)
        names = self.config.network.unknown_caller_services if not known else [
            name for r in known for name in r.services
        ]  # fmt: skip
        return frozenset(SERVICE_ALIASES.get(name, name) for name in names)


def remotes_of(config: Config, calling_ae: str, peer_host: str) -> list[RemoteSection]:
    """The [[remote]]s a caller is: those with its AE title (and at its address, where
    ``check_caller_host`` says the host is checked)."""
    known = config.remote_by_ae(calling_ae)
    if config.network.check_caller_host:
        known = [r for r in known if _same_host(r.host, peer_host)]
    return known


def may_move_to(config: Config, calling_ae: str, peer_host: str, destination_ae: str) -> bool:
    """May this caller C-MOVE to ``destination_ae`` (``[[remote]] move_destinations``)?
    One that is no [[remote]], or whose [[remote]] has no list, may move to any."""
    limits = [r.move_destinations for r in remotes_of(config, calling_ae, peer_host)]
    return not limits or any(not allowed or destination_ae in allowed for allowed in limits)


def _same_host(configured: str, actual: str) -> bool:
    import socket

    actual = actual.removeprefix("::ffff:")
    if configured == actual:
        return True
    try:
        infos = socket.getaddrinfo(configured, None)
    except OSError:
        return False
    return any(info[4][0].removeprefix("::ffff:") == actual for info in infos)


class AssociationSlots:
    """A box-wide limit on simultaneous associations, and on those of any one host,
    shared by worker processes."""

    def __init__(self, directory: Path, count: int, per_host: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"slot-{i:03d}" for i in range(count)]
        # A host limit at or above the box's is no limit: then no slot needs its host.
        self.per_host = per_host if 0 < per_host < count else 0
        self._lock_path = directory / "hosts.lock"

    def take(self, host: str) -> int | Rejection:
        """A slot for an association from ``host``: its file descriptor, or why none is
        given (every slot in use, or as many held by that host as it may have)."""
        if not self.per_host:
            fd = self._acquire()
            return fd if fd is not None else self.limit_rejection()
        host = host.removeprefix("::ffff:")
        # Taking a slot, naming its host and counting that host's slots are one step
        # for every worker: else two associations from one host could each count the
        # other and both be refused, or neither count the other and both get in.
        lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = self._held_by(host)
            if held >= self.per_host:
                return self.host_rejection(host, held)
            fd = self._acquire()
            if fd is None:
                return self.limit_rejection()
            os.ftruncate(fd, 0)
            os.pwrite(fd, host.encode(), 0)
            return fd
        finally:
            os.close(lock)  # and its lock with it

    def _acquire(self) -> int | None:
        """Take a free slot and return its file descriptor, or None when all are taken."""
        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    def _held_by(self, host: str) -> int:
        """How many slots ``host`` holds now. A free slot file still names its last
        host: only one that is locked counts."""
        name, held = host.encode(), 0
        for path in self.paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # never used yet
            try:
                if os.pread(fd, len(name) + 1, 0) != name:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    held += 1
            finally:
                os.close(fd)  # dropping the shared lock, if it was taken
        return held

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the descriptor drops the lock

    def limit_rejection(self) -> Rejection:
        return Rejection(
            REJECTED_TRANSIENT,
            SOURCE_PROVIDER_PRESENTATION,
            PRESENTATION_LOCAL_LIMIT_EXCEEDED,
            f"all {len(self.paths)} association slots are in use",
        )

    def host_rejection(self, host: str, held: int) -> Rejection:
        return Rejection(
            REJECTED_TRANSIENT,
            SOURCE_PROVIDER_PRESENTATION,
            PRESENTATION_LOCAL_LIMIT_EXCEEDED,
            f"{host} already holds {held} associations (max_associations_per_host)",
        )
