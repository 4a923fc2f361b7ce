"""Orthanc (Debian's package) as a peer archive on loopback, with a generated config."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.peers import free_port

ORTHANC = "/usr/sbin/Orthanc"


class OrthancPeer:
    """Ports are chosen at once; ``modalities`` (name -> AE, host, port) may be filled in
    before ``start`` writes the configuration."""

    def __init__(self, folder: Path, ae_title: str = "ORTHANC") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities: dict[str, tuple[str, str, int]] = {}
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "orthanc.json"

    def _write_config(self) -> None:
        self.config.write_text(
            json.dumps(
                {
                    "Name": "dicombox-test-peer",
                    "StorageDirectory": str(self.folder / "storage"),
                    "IndexDirectory": str(self.folder / "index"),
                    "DicomAet": self.ae_title,
                    "DicomPort": self.dicom_port,
                    "HttpPort": self.http_port,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "TcpNoDelay": True,
                    "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
                    "DicomAlwaysAllowEcho": True,
                    "DicomAlwaysAllowStore": True,
                    "DicomCheckCalledAet": False,
                    "Plugins": [],
                }
            )
        )

    def start(self, timeout: float = 30) -> OrthancPeer:
        self._write_config()
        log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen(
            [ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1).close()
                self.rest("/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError((self.folder / "orthanc.log").read_text(errors="replace"))

    def rest(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=data,
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"null")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
