"""The box as association requestor (SCU): pynetdicom AEs carrying the box's identity,
timeouts and PDU size, and the resolution of a destination from the CLI or a rule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association

from dicombox.core.config import Config, NetworkSection, RemoteSection


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int
    name: str = ""  # the [[remote]] name, when it is one
    tls: bool = False  # the [[remote]]'s tls: connect with the [network] tls_* settings

    def __str__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        return f"{label}{self.ae_title}@{self.host}:{self.port}"


def destination_of(remote: RemoteSection) -> Destination:
    """A [[remote]] as a place to connect to."""
    return Destination(remote.ae_title, remote.host, remote.port, remote.name, remote.tls)


class UnknownDestination(ValueError):
    pass


def resolve(
    config: Config, target: str, port: int | None = None, ae_title: str = "ANY-SCP"
) -> Destination:
    """``target`` is a [[remote]] name, or a host name used with ``port``."""
    remote = config.remote_named(target)
    if remote is not None and port is None:
        return Destination(remote.ae_title, remote.host, remote.port, remote.name, remote.tls)
    if port is None:
        known = ", ".join(r.name for r in config.remote) or "(none configured)"
        raise UnknownDestination(
            f"{target!r} is no [[remote]] name (known: {known}); "
            f"give HOST PORT to reach an unconfigured peer"
        )
    return Destination(ae_title, target, port)


def requestor_ae(config: Config, ae_title: str | None = None) -> AE:
    net = config.network
    ae = AE(ae_title=ae_title or config.box.ae_title)
    ae.implementation_class_uid = net.implementation_class_uid
    ae.implementation_version_name = net.implementation_version
    ae.maximum_pdu_size = net.send_max_pdu
    ae.acse_timeout = net.acse_timeout_s
    ae.dimse_timeout = net.dimse_timeout_s
    ae.network_timeout = net.network_timeout_s
    return ae


def associate(
    config: Config,
    remote: RemoteSection,
    contexts: list[str],
    roles: list[Any] | None = None,
    handlers: list[Any] | None = None,
) -> Association | None:
    """An association with a [[remote]] proposing ``contexts`` (default syntaxes), or
    None when it could not be established (pynetdicom has logged why)."""
    ae = requestor_ae(config)
    ae.maximum_pdu_size = network_for(config.network, remote).send_max_pdu
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate(
        remote.host,
        remote.port,
        ae_title=remote.ae_title,
        ext_neg=roles,
        evt_handlers=handlers,
        tls_args=tls_args_for(config.network, remote),
    )
    return assoc if assoc.is_established else None


def tls_args_for(
    network: NetworkSection, remote: RemoteSection | Destination
) -> tuple[Any, str] | None:
    """pynetdicom's ``tls_args`` (client context, server host name) for a TLS remote."""
    if not remote.tls:
        return None
    from dicombox.core.net.tls import client_context

    return client_context(network), remote.host


def network_for(network: NetworkSection, remote: RemoteSection) -> NetworkSection:
    """The [network] settings with the PDU size this remote is given, if any."""
    if not remote.max_pdu:
        return network
    return dataclasses.replace(network, send_max_pdu=remote.max_pdu)
