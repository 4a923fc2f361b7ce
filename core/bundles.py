"""Signed plugin bundles: the one thing a field update carries onto the box.

A bundle is an uncompressed tar archive (wheels are compressed already) holding:

- ``manifest.json``: the bundle's name and version, when it was made, the oldest dicombox
  it runs on, each wheel's file name, sha256 and size, and the plugins (entry points of
  the ``dicombox`` group) the wheels provide;
- ``manifest.sig``: the Ed25519 signature (64 raw bytes) of the manifest's exact bytes;
- the wheels themselves, flat, no folders.

Checking a bundle reads only those members, never unpacks it wholesale: the signature
must come from one of the keys in ``[updates] trusted_keys``, and then each wheel must
have the size and sha256 the signed manifest says. A wheel is therefore trusted because
the manifest that names its hash is, so nothing unsigned reaches pip.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import hashlib
import io
import json
import os
import re
import tarfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dicombox.core import __version__
from dicombox.core.hookspecs import PROJECT

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = 1
MAX_MANIFEST_BYTES = 1 << 20
# A wheel's file name is its identity for pip; anything else (folders, "..") is refused.
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")


class BundleError(ValueError):
    """A bundle (or key) that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class WheelEntry:
    file: str
    sha256: str
    size: int
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginEntry:
    name: str  # the entry-point name: what ``dicombox plugins`` and ``[plugins] disabled`` use
    value: str  # the module it loads
    distribution: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created: str
    min_dicombox: str
    wheels: list[WheelEntry] = field(default_factory=list)
    plugins: list[PluginEntry] = field(default_factory=list)
    format: int = FORMAT

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data.decode("utf-8"))
            if raw.get("format") != FORMAT:
                raise BundleError(f"manifest format {raw.get('format')!r}; this box reads {FORMAT}")
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                created=str(raw["created"]),
                min_dicombox=str(raw["min_dicombox"]),
                wheels=[WheelEntry(**w) for w in raw["wheels"]],
                plugins=[PluginEntry(**p) for p in raw["plugins"]],
            )
        except BundleError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"{MANIFEST} is not a bundle manifest: {exc}") from None


# --- keys -------------------------------------------------------------------------------


def decode_public_key(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key written as hex or base64."""
    text = text.strip()
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise BundleError("not an Ed25519 public key (32 bytes as base64 or 64 hex digits)")
    return raw


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def generate_key(path: Path) -> str:
    """Write a new private key (PKCS#8 PEM, readable by its owner only) to ``path`` and
    return its public key as base64, the form ``[updates] trusted_keys`` takes."""
    if path.exists():
        raise BundleError(f"{path} exists; a signing key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_text(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: cannot read the signing key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


# --- making a bundle (the vendor's side) ------------------------------------------------


def wheel_entry(path: Path) -> tuple[WheelEntry, list[PluginEntry]]:
    """Describe one wheel from its own metadata: name, version, ``dicombox`` entry points."""
    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            names = wheel.namelist()
            info_dirs = {n.split("/", 1)[0] for n in names if ".dist-info/" in n}
            if len(info_dirs) != 1:
                raise BundleError(f"{path.name}: expected one .dist-info folder in the wheel")
            info = info_dirs.pop()
            meta = HeaderParser().parsestr(wheel.read(f"{info}/METADATA").decode("utf-8"))
            points = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            points.optionxform = str  # type: ignore[assignment,method-assign]  # keep the case
            if f"{info}/entry_points.txt" in names:
                points.read_string(wheel.read(f"{info}/entry_points.txt").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, configparser.Error) as exc:
        raise BundleError(f"{path.name}: not a readable wheel: {exc}") from None
    dist, version = meta.get("Name", ""), meta.get("Version", "")
    if not dist or not version:
        raise BundleError(f"{path.name}: its METADATA has no Name or Version")
    plugins = (
        [PluginEntry(k, v.strip(), dist) for k, v in points.items(PROJECT)]
        if points.has_section(PROJECT)
        else []
    )
    entry = WheelEntry(path.name, hashlib.sha256(data).hexdigest(), len(data), dist, version)
    return entry, plugins


def make_bundle(
    key_path: Path,
    wheels: list[Path],
    out: Path,
    name: str = "",
    version: str = "",
    min_dicombox: str = __version__,
) -> Manifest:
    """Sign ``wheels`` into the bundle ``out``. Name and version default to the first
    wheel's distribution and version."""
    if not wheels:
        raise BundleError("a bundle needs at least one wheel")
    key = load_private_key(key_path)
    entries: list[WheelEntry] = []
    plugins: list[PluginEntry] = []
    for path in wheels:
        if not _WHEEL_NAME.match(path.name):
            raise BundleError(f"{path.name}: not a wheel file name")
        entry, provided = wheel_entry(path)
        entries.append(entry)
        plugins.extend(provided)
    if len({e.file for e in entries}) != len(entries):
        raise BundleError("two wheels have the same file name")
    _check_plugins(plugins)
    manifest = Manifest(
        name=name or entries[0].distribution,
        version=version or entries[0].version,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        min_dicombox=min_dicombox,
        wheels=entries,
        plugins=plugins,
    )
    body = manifest.to_bytes()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, body)
        _add(tar, SIGNATURE, key.sign(body))
        for path in wheels:
            _add(tar, path.name, path.read_bytes())
    os.replace(tmp, out)
    return manifest


def _check_plugins(plugins: list[PluginEntry]) -> None:
    if not plugins:
        raise BundleError(f"no wheel has an entry point in the {PROJECT!r} group: no plugin")
    names = [p.name for p in plugins]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BundleError(f"plugin {', '.join(twice)} is provided twice")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --- checking a bundle (the box's side) -------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    """Release numbers only ("0.10.2rc1" -> (0, 10, 2)): enough to order dicombox versions."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def _read_members(path: Path) -> dict[str, bytes]:
    """Every member of the bundle as bytes; only plain files with plain names."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile() or "/" in info.name or info.name in ("", ".", ".."):
                    raise BundleError(f"unexpected member {info.name!r}: a bundle is flat files")
                if info.name in members:
                    raise BundleError(f"member {info.name!r} appears twice")
                handle = tar.extractfile(info)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise BundleError(f"member {info.name!r} cannot be read")
                members[info.name] = handle.read()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{path}: not a bundle (not a readable tar archive: {exc})") from None
    return members


def verify_signature(body: bytes, signature: bytes, trusted_keys: list[str]) -> str:
    """The trusted key (as configured) whose signature ``signature`` is, or BundleError."""
    if not trusted_keys:
        raise BundleError(
            "no trusted keys are configured ([updates] trusted_keys), so no bundle can be accepted"
        )
    for text in trusted_keys:
        key = Ed25519PublicKey.from_public_bytes(decode_public_key(text))
        try:
            key.verify(signature, body)
            return text
        except InvalidSignature:
            continue
    raise BundleError(
        f"bad signature: the manifest is not signed by any of the {len(trusted_keys)} "
        "trusted key(s) in [updates] trusted_keys (signed by another key, or changed "
        "after signing)"
    )


def check_bundle(path: Path, trusted_keys: list[str], wheel_dir: Path) -> Manifest:
    """Verify the bundle at ``path`` and write its wheels to ``wheel_dir``.

    Order matters: nothing in the manifest is believed before its signature checks out,
    and no wheel is written before its hash matches the signed manifest."""
    members = _read_members(path)
    body, signature = members.get(MANIFEST), members.get(SIGNATURE)
    if body is None or signature is None:
        raise BundleError(f"not a bundle: it must hold {MANIFEST} and {SIGNATURE}")
    if len(body) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    verify_signature(body, signature, trusted_keys)
    manifest = Manifest.from_bytes(body)
    if _version_tuple(__version__) < _version_tuple(manifest.min_dicombox):
        raise BundleError(
            f"{manifest.label} needs dicombox {manifest.min_dicombox} or later; "
            f"this box runs {__version__}"
        )
    listed = {w.file for w in manifest.wheels}
    extra = sorted(set(members) - listed - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleError(f"{', '.join(extra)}: in the bundle but not in its signed manifest")
    _check_plugins(manifest.plugins)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for wheel in manifest.wheels:
        if not _WHEEL_NAME.match(wheel.file):
            raise BundleError(f"{wheel.file!r}: not a wheel file name")
        data = members.get(wheel.file)
        if data is None:
            raise BundleError(f"{wheel.file}: listed in the manifest but missing from the bundle")
        if len(data) != wheel.size:
            raise BundleError(
                f"{wheel.file}: corrupt wheel: size mismatch ({len(data)} bytes, "
                f"the manifest says {wheel.size})"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != wheel.sha256:
            raise BundleError(
                f"{wheel.file}: corrupt wheel: sha256 mismatch ({digest}, "
                f"the manifest says {wheel.sha256})"
            )
        (wheel_dir / wheel.file).write_bytes(data)
    return manifest
