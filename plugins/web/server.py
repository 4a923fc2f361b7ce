"""The console's HTTP(S) server: uvicorn on a daemon thread of the supervisor.

The listening socket is bound here, before uvicorn starts, so that a port already in
use is found at once: the box then logs a warning and runs on without its console
(several boxes on one machine, a test suite starting many) instead of failing. The
address it got (port 0 = any free one) is written to <data_dir>/run/web.json.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the web framework loads only when the console starts
    import uvicorn
    from fastapi import FastAPI

    from dicombox.plugins.web.console import Console

log = logging.getLogger("dicombox.web")
STOP_TIMEOUT_S = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); OSError if the address is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A restarted box gets its port back at once (connections in TIME_WAIT); a
        # port another process listens on is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)  # the network workers must not hold it
    return sock


def url_of(host: str, port: int, https: bool) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"{'https' if https else 'http'}://{shown}:{port}"


class WebServer:
    def __init__(self, console: Console, app: FastAPI) -> None:
        self.console = console
        self.app = app
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.info = console.box.run_dir / "web.json"

    def start(self) -> bool:
        """Start serving; False (and a warning) when the console cannot listen."""
        settings = self.console.settings
        address = settings.address()
        if address is None:
            return False
        host, port = address
        try:
            sock = bind(host, port)
        except OSError as exc:
            log.warning(
                "web console off: cannot listen on %s (%s); the box runs on without it. "
                'Set [web] listen to a free address, or "" to turn it off',
                settings.listen,
                exc.strerror or exc,
            )
            return False
        import uvicorn

        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            lifespan="off",
            log_config=None,  # the box's logging, as set up by the supervisor
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=3,
            ssl_certfile=settings.certificate or None,
            ssl_keyfile=settings.key or None,
        )
        try:
            config.load()  # a certificate that does not load is found now, not in the thread
        except Exception as exc:
            sock.close()
            log.warning("web console off: %s", exc)
            return False
        self.server = uvicorn.Server(config)
        bound_port = sock.getsockname()[1]
        self.console.url = url_of(host, bound_port, settings.https)
        self.console.logs.attach()
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="web", daemon=True
        )
        self.thread.start()
        _write_json(
            self.info,
            {"url": self.console.url, "host": host, "port": bound_port,
             "https": settings.https, "pid": os.getpid(), "started": time.time()},
        )  # fmt: skip
        log.info("web console on %s", self.console.url)
        return True

    def stop(self) -> None:
        self.app.state.stopping.set()  # live job streams end at their next tick
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(STOP_TIMEOUT_S)
            if self.thread.is_alive():
                log.warning("web console did not stop within %.0f s", STOP_TIMEOUT_S)
        self.console.logs.detach()
        self.info.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, object]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def running_url(run_dir: Path) -> str:
    """The console's address if the box that wrote web.json still runs, else ""."""
    try:
        info = json.loads((run_dir / "web.json").read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError):
        return ""
