"""The [web] configuration section: where the console listens, its certificate, and how
long a login lasts. Nothing secret lives here: accounts are in the index database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebSection:
    """The web console and REST API ([user-guide.md](user-guide.md#web-console-and-rest-api)).
    Nothing secret goes in this section: accounts are stored in the index database."""

    listen: str = "127.0.0.1:8080"
    """`host:port` (`[::1]:8080` for IPv6) of the console and API; `""` turns it off; port
    `0` takes any free port. The default answers only on this machine: to reach it from
    the network, name an address (and set a certificate). If the port is taken, the box
    logs a warning and runs without the console. The address in use is written to
    `<data_dir>/run/web.json` and shown by `dicombox status`."""
    certificate: str = ""
    """PEM certificate (chain). Set it together with `key` to serve HTTPS."""
    key: str = ""
    """The certificate's PEM private key file."""
    session_hours: float = 12.0
    """How long a login lasts."""
    max_failed_logins: int = 5
    """After this many failed logins for one name within `lockout_s`, that name is refused
    until `lockout_s` has passed."""
    lockout_s: float = 300.0
    """The window of `max_failed_logins`, and how long a name stays refused."""

    @property
    def https(self) -> bool:
        return bool(self.certificate and self.key)

    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when the console is off."""
        return parse_listen(self.listen)

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

        try:
            parse_listen(self.listen)
        except ValueError as exc:
            raise ConfigError(f"{name}.listen = {self.listen!r}: {exc}") from None
        if bool(self.certificate) != bool(self.key):
            raise ConfigError(f"[{name}] certificate and key go together: set both or neither")
        for key in ("certificate", "key"):
            value = getattr(self, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"{name}.{key} = {value!r}: no such file")
        if self.session_hours <= 0:
            raise ConfigError(f"{name}.session_hours = {self.session_hours}: more than 0")
        if self.max_failed_logins < 1 or self.lockout_s < 0:
            raise ConfigError(f"[{name}] max_failed_logins >= 1 and lockout_s >= 0")


def parse_listen(text: str) -> tuple[str, int] | None:
    """ "127.0.0.1:8080" -> ("127.0.0.1", 8080); "[::1]:8080" -> ("::1", 8080); "" -> None.
    Port 0 takes any free port (the one chosen is written to <data_dir>/run/web.json)."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError('expected "host:port", e.g. "127.0.0.1:8080", or "" for off')
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError('name the address to listen on, e.g. "0.0.0.0:8080" for every one')
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port}: expected 0..65535")
    return host, int(port)
