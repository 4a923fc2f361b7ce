"""Running the DCMTK peers, with TCP_NODELAY=1 so that we measure code, not Nagle."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    args: list[str | Path], timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=PEER_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def popen(
    args: list[str | Path], env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.Popen:
    """Start a peer; ``env``, variables to set for it on top of the peers' own."""
    return subprocess.Popen([str(a) for a in args], env={**PEER_ENV, **(env or {})}, **kwargs)  # type: ignore[arg-type]


def storescu(
    port: int,
    files: list[Path],
    aec: str = "DICOMBOX",
    aet: str = "STORESCU",
    extra: list[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    # -R: propose just the SOP classes of the files (storescu's default list lacks many)
    return run(
        [
            "storescu",
            "-R",
            "-aet",
            aet,
            "-aec",
            aec,
            *(extra or []),
            "127.0.0.1",
            str(port),
            *files,
        ],
        timeout=timeout,
    )
