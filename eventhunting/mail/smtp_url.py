"""`EVENTHUNTING_SMTP_URL` read into where and how to send: host, port, TLS mode, credentials."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

StartTlsMode = Literal["auto", "required", "never"]

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
STARTTLS_MODES: dict[str, StartTlsMode] = {"auto": "auto", "required": "required", "never": "never"}
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class SmtpEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where mail goes and how the connection is protected.

    - `implicit_tls` (`smtps://`): TLS from the first byte, certificate verified.
    - `starttls` (`smtp://`): `auto` upgrades when the server offers STARTTLS without checking
      its certificate (opportunistic, like Postfix's `may`: it stops eavesdroppers, not an
      active attacker); `required` refuses a server that does not offer it and verifies the
      certificate; `never` stays in clear text.
    - `tls_verify` overrides the certificate check of either mode (`false` for a
      self-signed test server, `true` to verify even opportunistic TLS).
    """

    host: str
    port: int
    implicit_tls: bool
    starttls: StartTlsMode
    tls_verify: bool
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password in a log or traceback
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"SmtpEndpoint({scheme}://{user}{self.host}:{self.port}, starttls={self.starttls})"

    __str__ = __repr__


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be true or false")


def parse_smtp_url(url: str) -> SmtpEndpoint:
    """Read an SMTP URL; a ValueError says what is wrong without repeating the URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("the scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if parts.path not in ("", "/"):
        raise ValueError("the URL must have no path")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    options = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(options) - {"starttls", "tls_verify"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (known: starttls, tls_verify)")
    implicit_tls = scheme == "smtps"
    starttls_values = options.get("starttls", ["auto"])
    starttls = STARTTLS_MODES.get(starttls_values[-1].lower())
    if starttls is None:
        raise ValueError("starttls must be auto, required or never")
    if implicit_tls and "starttls" in options:
        raise ValueError("smtps:// is TLS from the start; starttls applies to smtp:// only")
    if "tls_verify" in options:
        tls_verify = _flag("tls_verify", options["tls_verify"][-1])
    else:
        tls_verify = implicit_tls or starttls == "required"
    return SmtpEndpoint(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit_tls,
        starttls="never" if implicit_tls else starttls,
        tls_verify=tls_verify,
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )
