"""Tiny dicombox plugins built into real wheels, offline, for the field-update tests."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

GREETING = """
from dicombox.core import hookimpl

__version__ = "{version}"


@hookimpl
def dicombox_status(box):
    return ["{message}"]
"""

BROKEN_AT_IMPORT = """
__version__ = "{version}"
raise RuntimeError("{message}")
"""

# Loads and passes a trial run (on a scratch folder "dicombox-trial-…"), then fails
# when the real box starts with it: the case only the health check after restart catches.
BROKEN_AT_START = """
from dicombox.core import hookimpl

__version__ = "{version}"


@hookimpl
def dicombox_status(box):
    return ["{message}"]


@hookimpl
def dicombox_start(box):
    if not box.data_dir.name.startswith("dicombox-trial-"):
        raise RuntimeError("{message}: cannot start here")
"""


def build_plugin(
    where: Path,
    version: str,
    module: str = GREETING,
    message: str = "hello from bundle",
    distribution: str = "dicombox-hello",
    entry_point: str = "hello",
) -> Path:
    """A pure-Python wheel (PEP 427) of a one-module plugin; returns its path.

    Written directly rather than by a build backend: the setuptools at hand cannot make
    wheels without the separate ``wheel`` package, and the format is small."""
    package = distribution.replace("-", "_")
    info = f"{package}-{version}.dist-info"
    files = {
        f"{package}.py": module.format(version=version, message=message).encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: dicombox-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": f"[dicombox]\n{entry_point} = {package}\n".encode(),
    }
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    out = where / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{package}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
