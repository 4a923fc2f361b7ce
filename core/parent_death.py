"""A network worker ends with its supervisor, however the supervisor ends.

A worker left behind would keep the listening socket it inherited, take associations and
answer 0000 with no supervisor to run their routes, and hold the port against the next
start. So the kernel is asked to SIGKILL the worker when the supervisor dies (Linux's
``PR_SET_PDEATHSIG``, reached through the C library with ctypes). SIGKILL, not SIGTERM:
an orphan must not finish its associations, since every image it answers 0000 is one
the box has taken on with nobody to see it through. Nothing acknowledged is lost: an
image is answered only once durable, the routes a death cut off run at the next start,
and what was in flight was never answered, so its sender sends it again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger("dicombox.worker")
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have this process killed when ``parent`` (the supervisor) ends, and die now if it
    already has: it may have ended before the request was made."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(
            PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
            ctypes.c_ulong(0), ctypes.c_ulong(0),
        ) != 0  # fmt: skip
        why = os.strerror(ctypes.get_errno()) if failed else ""
    except (OSError, AttributeError) as exc:  # no prctl: not Linux
        failed, why = True, str(exc)
    if failed:
        log.warning("cannot ask to die with the supervisor (%s): checking on it instead", why)
    if is_orphaned(parent):
        end_orphan()


def is_orphaned(parent: int) -> bool:
    """Whether the supervisor is gone: an orphan is handed to another parent."""
    return os.getppid() != parent


def end_orphan() -> None:
    """End at once, as the kernel would have: no association may carry on."""
    os.kill(os.getpid(), signal.SIGKILL)
