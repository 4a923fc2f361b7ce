"""The box's one TOML configuration file, typed and validated at start.

Every key has a default, so an empty file (or no file) runs the box. Sections are plain
dataclasses; ``load_section`` validates a TOML table against one and names the key, the
value and what is allowed when something is wrong. Plugins contribute sections of their
own through the ``dicombox_config_sections`` hook, validated the same way.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom.uid import UID

from dicombox.core.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicombox.core.rules import key_problem
from dicombox.core.syntaxes import SYNTAX_NAMES, syntax_uid


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names key, value and rule."""


# What a calling AE may ask of the box, by the name [[remote]] services uses. C-ECHO is
# not among them: anyone the association policy lets in may verify.
SERVICE_PERMISSIONS = ("store", "query", "move", "get", "worklist", "mpps", "commit", "print")
# Earlier names still understood: configurations written before permissions were
# enforced said "find".
SERVICE_ALIASES = {"find": "query"}


@dataclass(frozen=True)
class BoxSection:
    """Who the box is on the network, and where it keeps what it holds."""

    ae_title: str = "DICOMBOX"
    """The box's AE title (1–16 characters)."""
    port: int = 11112
    """DICOM port; `0` picks a free port, which is written to `<data_dir>/run/ready.json`."""
    bind: str = "*"
    """Address to listen on; `*` means every IPv6 and IPv4 address."""
    data_dir: str = "./var"
    """Store, index, audit trail, run files; relative to where the box runs."""
    workers: int = 0
    """Network worker processes; `0` means one per core."""
    institution: str = ""
    """Who runs the box, as the README.TXT of the discs and sticks it writes names it;
    empty: the Institution Name of the first instance on the medium."""


@dataclass(frozen=True)
class NetworkSection:
    """Associations: how many, from whom, how fast, and DICOM over TLS. The TLS keys are
    explained in [security.md](security.md#dicom-tls)."""

    max_associations: int = 12
    """Simultaneous associations across all workers; past it: A-ASSOCIATE-RJ transient,
    "local limit exceeded"."""
    max_associations_per_host: int = 8
    """Of those, how many one calling IP address may hold, so that no one host takes every
    slot; past it: the same rejection. `0`: no limit but `max_associations`."""
    max_pdu: int = 0
    """Largest PDU we accept (`0` = unlimited; else at least 4096)."""
    send_max_pdu: int = 262144
    """Largest PDU we propose as requestor."""
    accept_unknown_callers: bool = True
    """`false`: only AE titles of `[[remote]]` entries may associate."""
    unknown_caller_services: list[str] = field(default_factory=lambda: [*SERVICE_PERMISSIONS])
    """What a caller that is no `[[remote]]` may ask for, when `accept_unknown_callers`
    lets it in (names as `[[remote]] services`)."""
    check_caller_host: bool = False
    """With the allow-list: the caller must also come from that remote's `host`."""
    accept_any_called_ae: bool = False
    """`true`: answer whatever called AE title the peer uses."""
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    """Our Implementation Class UID (a valid UID, at most 64 characters)."""
    implementation_version: str = IMPLEMENTATION_VERSION_NAME
    """Our Implementation Version Name (1 to 16 printable ASCII characters, no `\\`)."""
    acse_timeout_s: float = 30.0
    """The whole A-ASSOCIATE-RQ must arrive within it; also the wait for a release."""
    dimse_timeout_s: float = 30.0
    """Wait inside a message."""
    network_timeout_s: float = 30.0
    """Idle time between messages before we abort."""
    min_data_rate: int = 1024
    """Bytes per second a peer must keep up from the first byte of a PDU until its message
    is complete, judged over each `data_rate_window_s` the box waits on it; slower, and it
    gets A-ABORT. A slow link (64 kB/s) passes with a wide margin; a peer trickling a byte
    now and then to hold its association does not. `0`: off."""
    data_rate_window_s: float = 10.0
    """The window `min_data_rate` is judged over (so by default 10 KiB per 10 s); a peer
    silent for a whole window inside a message is cut off too."""
    tls_port: int = 0
    """TCP port for DICOM TLS (BCP 195: TLS 1.2 or 1.3, AEAD ciphers only); `0` turns it
    off. Must differ from `box.port`."""
    tls_certificate: str = ""
    """The box's certificate (chain), PEM. Required, with `tls_key`, when `tls_port` is
    set. It is also presented as client certificate on outgoing TLS associations."""
    tls_key: str = ""
    """The private key of `tls_certificate`, PEM."""
    tls_ca: str = ""
    """PEM bundle used to verify peers, both callers (when client certificates are
    requested) and remotes we call. Without it, the certificates of remotes we call are
    not verified (a warning is logged once)."""
    tls_require_client_cert: bool = False
    """Callers must present a certificate signed by `tls_ca`. Needs `tls_ca`."""
    tls_pinned: list[str] = field(default_factory=list)
    """If set, only peers whose certificate has one of these SHA-256 fingerprints (64 hex
    digits, colons allowed) are accepted, in both directions. On the TLS port this needs
    `tls_ca`."""


@dataclass(frozen=True)
class RemoteSection:
    """One per peer, named: archives, modalities, RIS, film printers. What a remote may
    ask of the box is explained in [security.md](security.md#permissions-per-remote-ae)."""

    name: str
    """What rules and the CLI call it."""
    ae_title: str
    """Its AE title."""
    host: str
    """Its host name or address."""
    port: int
    """Its DICOM port."""
    services: list[str] = field(default_factory=lambda: [*SERVICE_PERMISSIONS])
    """What it may ask of the box when it calls: some of `store`, `query`, `move`, `get`,
    `worklist`, `mpps`, `commit`, `print`. Anything else is answered 0124 (Refused: Not
    Authorized), keeps nothing, and is audited once per association. C-ECHO is always
    answered. `find`, the name used before permissions were enforced, still means
    `query`."""
    move_destinations: list[str] = field(default_factory=list)
    """The AE titles (of `[[remote]]`s) it may C-MOVE to; empty = any `[[remote]]`. Its
    own title is not implied. Others are answered 0124."""
    max_associations: int = 2
    """Outgoing associations to it at once."""
    transfer_syntaxes: list[str] = field(default_factory=list)
    """What it accepts, in our order of preference: UIDs or the names `explicit`,
    `implicit`, `big-endian`, `rle`, `j2k-lossless`, `jpegls-lossless`, `j2k`,
    `jpegls-near` (and, to receive only, `jpeg-baseline`, `jpeg-extended`,
    `jpeg-lossless`, `deflate`). Empty: each instance as stored, else a native syntax.
    Each (class, syntax) is proposed as a context of its own, so the order is ours."""
    sop_classes: list[str] = field(default_factory=list)
    """The only SOP Class UIDs it takes; empty = any. Others are reported refused, not
    sent."""
    allow_lossy: bool = False
    """May instances be compressed lossy (`j2k`, `jpegls-near`) for it? Lossy output is
    marked Lossy Image Compression `01` with method and ratio."""
    split_enhanced: bool = False
    """Send Enhanced CT, MR, PET and XA instances as single-frame CT, MR, PET and XA
    images, one per frame (seed 002, for archives without the enhanced classes), unless
    `sop_classes` lists the enhanced class. Frame UIDs are derived from the original's,
    so a retry sends the same instances."""
    max_pdu: int = 0
    """The largest PDU we accept from it (`0`: `[network] send_max_pdu`)."""
    retries: int = 2
    """An MPPS message or storage commitment request to it that failed for a reason that
    may pass is tried this many more times. A forward is not limited: it is tried until
    it succeeds or is refused for good (see Jobs in [internals.md](internals.md#jobs))."""
    retry_delay_s: float = 30.0
    """Wait before the first retry; doubles for each next one (more than 0)."""
    retry_delay_max_s: float = 600.0
    """The longest wait between two tries of a forward to it."""
    commit: bool = False
    """After forwarding to it, ask it for storage commitment."""
    commit_delay_s: float = 600.0
    """Wait this long after a forward before asking, so one request covers what arrived
    meanwhile."""
    tls: bool = False
    """Open outgoing associations to this remote over TLS, with the `[network] tls_*`
    files."""


@dataclass(frozen=True)
class StorageSection:
    """What the box keeps, how durably, and when it deletes."""

    duplicates: Literal["keep-first", "replace", "keep-both", "reject"] = "keep-first"
    """A SOP instance that is already stored. `keep-first`: keep the old one and answer
    0000. `replace`: overwrite it. `keep-both`: store the second copy beside the first.
    `reject`: answer 0111."""
    reserve_mb: int = 512
    """Below this much free space, C-STORE answers A700 and writes nothing."""
    directory_fsync: Literal["auto", "always"] = "auto"
    """`auto`: after a new file's fsync, fsync its folder too unless the file system
    commits the new name with the file (ext4 with its journal, XFS). `always`: fsync the
    folder every time, as POSIX asks."""
    accept_unknown_classes: bool = False
    """Promiscuous mode: accept storage of SOP classes the box does not know."""
    transfer_syntax_order: Literal["lossless-first", "native-first", "compressed-first"] = (
        "lossless-first"
    )
    """Which of a peer's proposed syntaxes to pick (see
    [conformance-choices.md](conformance-choices.md))."""
    forward_delay_s: float = 3.0
    """A forward job waits this long after the first instance, so one association carries
    the whole study."""
    watermark_mb: float = 0.0
    """`0`: off, nothing is ever deleted. Above this much stored data, delete instances
    that every remote they were forwarded to has committed, oldest first. Nothing else is
    ever deleted. `dicombox watermark` applies it at once."""
    watermark_low_mb: float = 0.0
    """Delete down to this (`0`: 90 % of `watermark_mb`)."""
    watermark_check_s: float = 60.0
    """How often the supervisor checks."""


@dataclass(frozen=True)
class RouteSection:
    """What to do with each stored instance.

    ```toml
    [[route]]
    when = { calling_ae = "CT01", Modality = "CT|PT", StationName = "CT-*" }
    forward = ["pacs", "backup"]     # [[remote]] names
    fetch_priors = "pacs"            # pull this patient's earlier studies from there
    ```

    A route that names an unknown remote or an unknown `when` key is a configuration
    error."""

    when: dict[str, str] = field(default_factory=dict)
    """Keys are `calling_ae`, `sop_class` or any DICOM keyword (`modality` in lower case
    works too). Values take `*` and `?` and alternatives separated by `|`. All keys must
    match; an empty `when` matches everything. A multi-valued attribute matches when any
    value does."""
    forward: list[str] = field(default_factory=list)
    """`[[remote]]` names: queues one forward job per remote and study (see Forwarding in
    [internals.md](internals.md#forwarding))."""
    fetch_priors: str = ""
    """A `[[remote]]` to pull this patient's earlier studies from: one job per arriving
    study C-FINDs that archive for the patient's studies and C-MOVEs the newest
    `[qr] priors_max` it does not hold into the box. The archive must know the box's AE
    title as a move destination. Instances that come from that archive do not trigger it
    again."""
    on: Literal["stored", "mpps-completed"] = "stored"
    """`mpps-completed` makes the route act on the whole study once the modality reports
    its procedure step COMPLETED, instead of on each instance as it is stored (`stored`).
    `when` is then read against one instance of the study and the MPPS sender's AE
    title."""
    burn: bool = False
    """Burn each study it matches, once no image has arrived for it for `[media] idle_s`
    (read by the media plugin)."""
    print: str = ""
    """A `[[printer]]` name: print each study it matches there, once no image has come for
    `[print] idle_s` (or when its MPPS completes, with `on = "mpps-completed"`); read by
    the print plugin."""
    print_key_images: bool = False
    """With `print`: print only the images the study's Key Object Selection documents
    name."""


@dataclass(frozen=True)
class PluginsSection:
    """Which plugins load."""

    disabled: list[str] = field(default_factory=list)
    """Entry-point names of plugins to skip, built-in or field-installed."""


@dataclass(frozen=True)
class UpdatesSection:
    """Field updates of plugins: signed bundles, `dicombox plugins install` (see
    [operations.md](operations.md#updating-plugins-in-the-field))."""

    trusted_keys: list[str] = field(default_factory=list)
    """Ed25519 public keys (raw 32 bytes, base64 or 64 hex digits) whose signed bundles
    the box accepts. Empty: no bundle can be installed."""
    restart_command: list[str] = field(default_factory=list)
    """How `plugins install`/`rollback` restart a running box, as a command and its
    arguments, e.g. `["systemctl", "restart", "dicombox"]`. Empty: the box is sent SIGUSR2
    and restarts itself in place (same process id, so systemd sees a reload, not a
    crash)."""
    health_timeout_s: float = 60.0
    """How long the box (and the trial box) may take to come up and answer C-ECHO."""
    health_calling_ae: str = "DBX-HEALTH"
    """The calling AE title of the health check's C-ECHO. With `accept_unknown_callers =
    false`, add a `[[remote]]` with this AE title (host `127.0.0.1`) so the box lets its
    own check in."""

    def validate(self, name: str) -> None:
        if self.trusted_keys:  # only then: checking keys brings in the crypto library
            from dicombox.core.bundles import BundleError, decode_public_key

            for i, key in enumerate(self.trusted_keys):
                try:
                    decode_public_key(key)
                except BundleError as exc:
                    raise ConfigError(f"{name}.trusted_keys[{i}] = {key!r}: {exc}") from None
        if self.health_timeout_s <= 0:
            raise ConfigError(f"{name}.health_timeout_s = {self.health_timeout_s}: expected > 0")
        if not 1 <= len(self.health_calling_ae) <= 16 or "\\" in self.health_calling_ae:
            raise ConfigError(
                f"{name}.health_calling_ae = {self.health_calling_ae!r}: 1 to 16 characters, "
                "no '\\'"
            )


@dataclass(frozen=True)
class LogSection:
    """What the box logs, on standard error (under systemd: the journal). What a log line
    of an association says is in [user-guide.md](user-guide.md#logs)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe records logged."""
    format: Literal["json", "text"] = "text"
    """`json`: one structured line per record."""


@dataclass(frozen=True)
class AuditSection:
    """A copy of the audit trail for a syslog collector (DICOM PS3.15 A.6 / A.7), as
    [security.md](security.md#audit-trail) explains.

    ```toml
    [audit]
    syslog = "tls://arr.hospital.example:6514"
    syslog_ca = "/etc/dicombox/hospital-ca.pem"
    ```

    `dicombox config check` reports a malformed URL, a missing CA file or a bad header
    value with the key's name."""

    syslog: str = ""
    """`""` = off; `udp://host:514` or `tls://host:6514` (the port defaults to these)."""
    syslog_ca: str = ""
    """PEM bundle the collector's certificate is verified against (TLS); `""` = the
    system's CAs."""
    syslog_app_name: str = "dicombox"
    """APP-NAME in the syslog header (1–48 printable ASCII characters)."""
    syslog_msgid: str = "IHE+RFC-3881"
    """MSGID in the syslog header, the value IHE ITI-20 gives; some collectors expect
    `"IHE+DICOM"` (1–32 printable ASCII characters)."""

    def validate(self, name: str) -> None:
        from dicombox.core.syslog import parse_target

        if self.syslog:
            try:
                parse_target(self.syslog)
            except ValueError as exc:
                raise ConfigError(f"{name}.syslog = {self.syslog!r}: {exc}") from None
        if self.syslog_ca and not Path(self.syslog_ca).is_file():
            raise ConfigError(f"{name}.syslog_ca = {self.syslog_ca!r}: no such file")
        for key, limit in (("syslog_app_name", 48), ("syslog_msgid", 32)):
            value = getattr(self, key)
            if not 1 <= len(value) <= limit or any(not 33 <= ord(c) <= 126 for c in value):
                raise ConfigError(
                    f"{name}.{key} = {value!r}: 1 to {limit} printable ASCII characters, no spaces"
                )


@dataclass(frozen=True)
class Config:
    box: BoxSection = field(default_factory=BoxSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    remote: list[RemoteSection] = field(default_factory=list)
    storage: StorageSection = field(default_factory=StorageSection)
    route: list[RouteSection] = field(default_factory=list)
    plugins: PluginsSection = field(default_factory=PluginsSection)
    updates: UpdatesSection = field(default_factory=UpdatesSection)
    log: LogSection = field(default_factory=LogSection)
    audit: AuditSection = field(default_factory=AuditSection)
    # Sections contributed by plugins, already validated: {section name: dataclass instance}
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "(embedded defaults)"

    @property
    def data_dir(self) -> Path:
        return Path(self.box.data_dir)

    def remote_named(self, name: str) -> RemoteSection | None:
        return next((r for r in self.remote if r.name == name), None)

    def remote_by_ae(self, ae_title: str) -> list[RemoteSection]:
        return [r for r in self.remote if r.ae_title == ae_title]

    def with_overrides(self, **box_overrides: Any) -> Config:
        """A copy with some [box] keys replaced (the CLI's --ae-title, --port …)."""
        given = {k: v for k, v in box_overrides.items() if v is not None}
        box = dataclasses.replace(self.box, **given)
        return dataclasses.replace(self, box=box)


CORE_SECTIONS: dict[str, type] = {
    "box": BoxSection,
    "network": NetworkSection,
    "remote": RemoteSection,
    "storage": StorageSection,
    "route": RouteSection,
    "plugins": PluginsSection,
    "updates": UpdatesSection,
    "log": LogSection,
    "audit": AuditSection,
}
ARRAY_SECTIONS = {"remote", "route"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"{key} = {value!r}: expected {_describe(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise wrong
        return value
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        return {str(k): str(v) if not isinstance(v, list) else v for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise wrong
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong
        return load_section(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # a programming error in a section


# Marks the field of a section that keeps the keys the section does not declare.
_OTHER_KEYS = "dicombox.config.other_keys"


def other_keys() -> Any:
    """A section field keeping, as written, the keys the section does not declare itself,
    for what the section chooses to read them: the device driver it names, which declares
    its own keys (``[media] burner = "rimage"`` and rimage's keys in ``[media]``). The
    section's ``validate`` says which it accepts (``check_other_keys``) and reads them
    with ``load_part``."""
    return field(default_factory=dict, metadata={_OTHER_KEYS: True})


def keeps_other_keys(f: dataclasses.Field[Any]) -> bool:
    """Whether a section's field is its ``other_keys()``: no key of its own."""
    return bool(f.metadata.get(_OTHER_KEYS))


def _fields(cls: type) -> tuple[dict[str, dataclasses.Field[Any]], str | None]:
    """A section's own keys, and the name of its field for the other keys (if any)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    rest = next((n for n, f in fields.items() if f.metadata.get(_OTHER_KEYS)), None)
    if rest is not None:
        del fields[rest]
    return fields, rest


def _unknown_key(name: str, key: str, allowed: typing.Iterable[str]) -> ConfigError:
    return ConfigError(
        f"[{name}] has unknown key {key!r}; allowed keys: {', '.join(sorted(allowed))}"
    )


def load_section(cls: type, table: dict[str, Any], name: str) -> Any:
    """Validate one TOML table against the dataclass ``cls``; ``name`` prefixes errors."""
    hints = typing.get_type_hints(cls)
    fields, rest = _fields(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown and rest is None:
        raise _unknown_key(name, unknown[0], fields)
    values: dict[str, Any] = {}
    if rest is not None:
        values[rest] = {key: table[key] for key in unknown}
    for fname, f in fields.items():
        if fname in table:
            values[fname] = _coerce(table[fname], hints[fname], f"{name}.{fname}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"[{name}] needs the key {fname!r} ({_describe(hints[fname])})")
    section = cls(**values)
    check = getattr(section, "validate", None)
    if check is not None:
        check(name)
    return section


def section_keys(section: Any) -> dict[str, Any]:
    """A loaded section's keys and values again: its own and the other keys it kept."""
    fields, rest = _fields(type(section))
    keys = {key: getattr(section, key) for key in fields}
    if rest is not None:
        keys.update(getattr(section, rest))
    return keys


def load_part(cls: type, section: Any, name: str, chosen: str = "") -> Any:
    """The dataclass ``cls`` (a driver's options) from the keys of the loaded ``section``
    that ``cls`` declares, validated as a section is: errors name ``name`` and the key.

    A ``ValueError`` from the part's own ``validate`` (a driver saying what it needs) is
    reported after ``chosen``, the key that chose the driver: "[media] burner =
    'primera' needs hot_folder, the robot's"."""
    wanted = {f.name for f in dataclasses.fields(cls)}
    keys = {key: value for key, value in section_keys(section).items() if key in wanted}
    try:
        return load_section(cls, keys, name)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(" ".join(filter(None, (f"[{name}]", chosen, str(exc))))) from None


def check_other_keys(section: Any, name: str, allowed: typing.Iterable[str]) -> None:
    """Refuse a key ``section`` kept that is not in ``allowed`` (what its drivers read)."""
    fields, rest = _fields(type(section))
    allowed = set(allowed)
    for key in getattr(section, rest) if rest is not None else {}:
        if key not in allowed:
            raise _unknown_key(name, key, allowed | set(fields))


def check_choice(key: str, value: str, choices: typing.Iterable[str]) -> None:
    """Refuse a ``value`` of ``key`` that is none of ``choices`` (a driver's name)."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: expected {' | '.join(map(repr, choices))}")


def _check_identity(network: NetworkSection) -> None:
    """What the box says of itself in every A-ASSOCIATE-AC: a value pynetdicom cannot
    encode would drop every association, so it is refused here (PS3.7 D.3.3.2)."""
    version = network.implementation_version
    if not 1 <= len(version) <= 16 or not all(" " <= c <= "~" and c != "\\" for c in version):
        raise ConfigError(
            f"network.implementation_version = {version!r}: 1 to 16 printable ASCII "
            "characters, no '\\'"
        )
    if not UID(network.implementation_class_uid).is_valid:
        raise ConfigError(
            f"network.implementation_class_uid = {network.implementation_class_uid!r}: "
            "not a valid UID (digits and dots, at most 64 characters)"
        )


def _check_pace(network: NetworkSection) -> None:
    """The limits that keep slow or greedy peers from holding every association."""
    if network.max_associations_per_host < 0:
        raise ConfigError(
            f"network.max_associations_per_host = {network.max_associations_per_host}: "
            "expected 0 (no limit per host) or more"
        )
    if network.min_data_rate < 0:
        raise ConfigError(
            f"network.min_data_rate = {network.min_data_rate}: expected bytes per second, "
            "0 (off) or more"
        )
    if not network.data_rate_window_s > 0:
        raise ConfigError(
            f"network.data_rate_window_s = {network.data_rate_window_s}: expected > 0"
        )


def _check_core(config: Config) -> None:
    """Rules that span keys, named the way a site engineer would look them up."""
    if not 1 <= len(config.box.ae_title) <= 16 or "\\" in config.box.ae_title:
        raise ConfigError(f"box.ae_title = {config.box.ae_title!r}: 1 to 16 characters, no '\\'")
    if not 0 <= config.box.port <= 65535:
        raise ConfigError(
            f"box.port = {config.box.port}: expected a TCP port 1..65535 (0 = any free)"
        )
    if config.box.workers < 0:
        raise ConfigError(f"box.workers = {config.box.workers}: expected 0 (one per core) or more")
    if config.network.max_pdu != 0 and config.network.max_pdu < 4096:
        raise ConfigError(f"network.max_pdu = {config.network.max_pdu}: 0 or at least 4096")
    if config.network.max_associations < 1:
        raise ConfigError("network.max_associations must be at least 1")
    _check_pace(config.network)
    _check_identity(config.network)
    _check_tls(config)
    if config.storage.reserve_mb < 0:
        raise ConfigError(f"storage.reserve_mb = {config.storage.reserve_mb}: expected 0 or more")
    names = [r.name for r in config.remote]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"[[remote]] name {name!r} is used twice")
    for r in config.remote:
        if not 1 <= r.port <= 65535:
            raise ConfigError(f"remote {r.name!r}: port = {r.port}: expected 1..65535")
        if r.retries < 0:
            raise ConfigError(f"remote {r.name!r}: retries = {r.retries}: expected 0 or more")
        if not 0 < r.retry_delay_s <= r.retry_delay_max_s:
            raise ConfigError(
                f"remote {r.name!r}: retry_delay_s = {r.retry_delay_s}, retry_delay_max_s = "
                f"{r.retry_delay_max_s}: expected 0 < retry_delay_s <= retry_delay_max_s"
            )
        _check_services(f"remote {r.name!r}: services", r.services)
        for syntax in r.transfer_syntaxes:
            if syntax_uid(syntax) is None:
                raise ConfigError(
                    f"remote {r.name!r}: transfer_syntaxes has {syntax!r}; use a UID or one "
                    f"of {', '.join(SYNTAX_NAMES)}"
                )
    _check_services("network.unknown_caller_services", config.network.unknown_caller_services)
    titles = {r.ae_title for r in config.remote}
    for r in config.remote:
        for title in r.move_destinations:
            if title not in titles:
                raise ConfigError(
                    f"remote {r.name!r}: move_destinations has {title!r}, the AE title of no "
                    f"[[remote]]; known: {', '.join(sorted(titles))}"
                )
    storage = config.storage
    if storage.watermark_mb < 0 or not 0 <= storage.watermark_low_mb <= storage.watermark_mb:
        raise ConfigError("storage.watermark_low_mb must lie between 0 and watermark_mb")
    for i, route in enumerate(config.route):
        for key in route.when:
            if problem := key_problem(key):
                raise ConfigError(f"route[{i}].when: {problem}")
        for target in [*route.forward, *([route.fetch_priors] if route.fetch_priors else [])]:
            if target not in names:
                raise ConfigError(
                    f"route[{i}].forward names {target!r}, which is no [[remote]]; "
                    f"known remotes: {', '.join(names) or '(none)'}"
                )


def _check_services(key: str, services: list[str]) -> None:
    for name in services:
        if SERVICE_ALIASES.get(name, name) not in SERVICE_PERMISSIONS:
            raise ConfigError(
                f"{key} has {name!r}; expected some of {', '.join(SERVICE_PERMISSIONS)}"
            )


def _check_tls(config: Config) -> None:
    net = config.network
    if not 0 <= net.tls_port <= 65535:
        raise ConfigError(f"network.tls_port = {net.tls_port}: expected 1..65535 (0 = off)")
    if net.tls_port and net.tls_port == config.box.port:
        raise ConfigError(f"network.tls_port = {net.tls_port}: must differ from box.port")
    tls_remotes = [r.name for r in config.remote if r.tls]
    if net.tls_port or tls_remotes:
        what = "network.tls_port" if net.tls_port else f"remote {tls_remotes[0]!r}: tls = true"
        if net.tls_port and not (net.tls_certificate and net.tls_key):
            raise ConfigError(f"{what} needs network.tls_certificate and network.tls_key")
    for key in ("tls_certificate", "tls_key", "tls_ca"):
        value = getattr(net, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"network.{key} = {value!r}: no such file")
    if bool(net.tls_certificate) != bool(net.tls_key):
        raise ConfigError("network.tls_certificate and network.tls_key go together: give both")
    if net.tls_require_client_cert and not net.tls_ca:
        raise ConfigError(
            "network.tls_require_client_cert = true needs network.tls_ca to verify clients"
        )
    if net.tls_pinned and net.tls_port and not net.tls_ca:
        # Without a CA the server cannot ask for (and so cannot pin) a client certificate.
        raise ConfigError("network.tls_pinned on the TLS port needs network.tls_ca")
    for i, pin in enumerate(net.tls_pinned):
        clean = pin.replace(":", "").replace(" ", "").lower()
        if len(clean) != 64 or any(c not in "0123456789abcdef" for c in clean):
            raise ConfigError(
                f"network.tls_pinned[{i}] = {pin!r}: expected a SHA-256 fingerprint (64 hex)"
            )


def parse_config(
    data: dict[str, Any], plugin_sections: dict[str, type] | None = None, source: str = "-"
) -> Config:
    """Build a Config from a parsed TOML document."""
    plugin_sections = plugin_sections or {}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, table in data.items():
        if name in CORE_SECTIONS:
            cls = CORE_SECTIONS[name]
            if name in ARRAY_SECTIONS:
                if not isinstance(table, list):
                    raise ConfigError(f"[{name}] must be written [[{name}]] (one table per entry)")
                values[name] = [load_section(cls, t, f"{name}[{i}]") for i, t in enumerate(table)]
            else:
                if not isinstance(table, dict):
                    raise ConfigError(f"{name} must be a [{name}] table")
                values[name] = load_section(cls, table, name)
        elif name in plugin_sections:
            cls = plugin_sections[name]
            if isinstance(table, list):
                extra[name] = [load_section(cls, t, f"{name}[{i}]") for i, t in enumerate(table)]
            else:
                extra[name] = load_section(cls, table, name)
        else:
            known = sorted(set(CORE_SECTIONS) | set(plugin_sections))
            raise ConfigError(f"unknown section [{name}]; known sections: {', '.join(known)}")
    for name, cls in plugin_sections.items():
        if name not in extra:
            extra[name] = cls()
    config = Config(**values, extra=extra, source=source)
    _check_core(config)
    return config


def load_config(path: str | Path | None, plugin_sections: dict[str, type] | None = None) -> Config:
    """Read and validate the TOML file at ``path``; ``None`` gives the embedded defaults."""
    if path is None:
        return parse_config({}, plugin_sections)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse_config(data, plugin_sections, source=str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
