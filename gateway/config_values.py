"""Values the configuration is made of, and their parsing: addresses, listeners, rates,
access-log templates, the error type. A leaf module: ``config.py`` and ``config_checks.py``
build on it, and code that only needs one of these imports it from ``gateway.config``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from dataclasses import dataclass

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# A DNS name as a CA will issue for it: labels of letters, digits and hyphens (a "*." first
# label is a wildcard, which needs dns-01, a challenge asgigw cannot answer).
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")

KiB = 1024
MiB = 1024 * KiB
# Access-log fields a --access-log-format template may name, as {name} (docs/logging.md);
# gateway/access_log.py implements each one.
ACCESS_LOG_FIELDS = (
    "client",
    "client_host",
    "method",
    "path",
    "query",
    "path_query",
    "target",
    "status",
    "bytes",
    "duration",
    "duration_ms",
    "http_version",
    "scheme",
    "host",
    "tls_version",
    "user_agent",
    "referer",
    "request_id",
    "outcome",
    "time",
    "time_iso",
    "pid",
)
ACCESS_LOG_PRESETS = ("default", "common", "combined", "json")
LOG_CONFIG_SUFFIXES = (".json", ".toml", ".yaml", ".yml")

# Far beyond any core count asgigw runs on; a typo like --workers 4000 should not fork-bomb.
MAX_WORKERS = 512


# The libuv loop: uvloop on POSIX, its Windows port winloop on Windows (same API).
UVLOOP_MODULE = "winloop" if sys.platform == "win32" else "uvloop"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (start-up stays cheap)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # already imported without a spec (made at run time)
        return module in sys.modules


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and the problem."""


def parse_log_template(template: str) -> list[str | tuple[str]]:
    """Split an access-log template into literal text and ``(field,)`` parts.

    ``{name}`` is a field from ACCESS_LOG_FIELDS; ``{{`` and ``}}`` are literal braces.
    Unknown names and unbalanced braces raise ConfigError naming --access-log-format.
    """
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    position = 0
    while position < len(template):
        char = template[position]
        if template.startswith("{{", position) or template.startswith("}}", position):
            literal.append(char)
            position += 2
        elif char == "{":
            end = template.find("}", position)
            name = template[position + 1 : end] if end > 0 else ""
            if end < 0 or "{" in name:
                raise ConfigError(f"--access-log-format {template!r}: unclosed '{{' (write {{{{ for a brace)")
            if name not in ACCESS_LOG_FIELDS:
                known = ", ".join(ACCESS_LOG_FIELDS)
                raise ConfigError(f"--access-log-format: unknown field {{{name}}}; known fields: {known}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((name,))
            position = end + 1
        elif char == "}":
            raise ConfigError(f"--access-log-format {template!r}: unmatched '}}' (write }}}} for a brace)")
        else:
            literal.append(char)
            position += 1
    if literal:
        parts.append("".join(literal))
    if not any(isinstance(part, tuple) for part in parts):
        raise ConfigError(
            f"--access-log-format {template!r}: choose {', '.join(ACCESS_LOG_PRESETS)} or a {{field}} template"
        )
    return parts


@dataclass(frozen=True, slots=True)
class BindAddress:
    """One listening address, parsed from ``HOST:PORT`` or ``[IPv6]:PORT``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, option: str = "--bind") -> BindAddress:
        """Parse ``127.0.0.1:8000``, ``localhost:8000``, ``[::1]:8443`` or ``:8000``.

        ``option`` names the option the text came from in the error message.
        """
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ConfigError(f"{option} {text!r}: expected [IPv6]:PORT, e.g. [::1]:8443")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ConfigError(f"{option} {text!r}: {host!r} is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ConfigError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
            if ":" in host:
                raise ConfigError(f"{option} {text!r}: write IPv6 addresses in brackets, [::1]:8443")
            host = host or "0.0.0.0"
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"{option} {text!r}: port must be a number from 0 to 65535")
        return cls(host, int(port_text))

    def url_host(self) -> str:
        """The host as it appears in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}


def parse_rate(text: str) -> tuple[float, float]:
    """``--rate-limit`` text (``10/s``, ``600/m``, ``0.5/s``) as ``(requests, per seconds)``."""
    count_text, slash, unit = text.strip().partition("/")
    try:
        count = float(count_text)
    except ValueError:
        count = -1.0
    if not slash or unit.strip().lower() not in _RATE_UNITS or not 0 < count < 1e9:
        raise ConfigError(f"--rate-limit {text!r}: expected N/s or N/m with N greater than 0, e.g. 10/s or 600/m")
    return count, _RATE_UNITS[unit.strip().lower()]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listener and what it serves: the app (HTTPS, or HTTP with --no-tls), with or
    without a PROXY protocol header first, or the --redirect-http responder.

    It listens on ``address`` (TCP), or on a socket of another kind (gateway/listeners.py):
    a Unix socket at ``path``, or the inherited descriptor ``fd`` (--fd, systemd, whose
    socket unit may give it a ``name``). ``extra`` listeners (--proxy-protocol-bind,
    --redirect-http) are bound whatever else is given.
    """

    address: BindAddress | None
    proxy_protocol: bool = False
    redirect: bool = False
    extra: bool = False
    path: str | None = None
    fd: int | None = None
    name: str | None = None
