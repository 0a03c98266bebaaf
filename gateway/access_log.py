"""The access log: one line per exchange on the ``gateway.access`` logger.

:class:`AccessLogFormatter` is compiled once at start-up from ``--access-log-format`` (a
preset or a ``{field}`` template, see docs/logging.md) and kept in the ServerContext;
streams call :meth:`AccessLogFormatter.log` only when the access log is on. Every value
that came from the client goes through :func:`gateway.logs.escape`; the ``json`` format
JSON-encodes the escaped values. The default line is
``127.0.0.1:50312 - "GET /items?page=2 HTTP/1.1" 200 1432 0.8ms``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

from gateway.config import ACCESS_LOG_FIELDS, Config, ConfigError, parse_log_template
from gateway.logs import LoggingSetupError, address_label, configure_logging, escape, escape_bytes, reopen_log_files

access_logger = logging.getLogger("gateway.access")

Scope = MutableMapping[str, Any]

PRESETS = {
    "common": '{client_host} - - [{time}] "{method} {target} HTTP/{http_version}" {status} {bytes}',
    "combined": '{client_host} - - [{time}] "{method} {target} HTTP/{http_version}" {status} {bytes}'
    ' "{referer}" "{user_agent}"',
}
# Fields of the json format, in this order (every documented field but the derived ones).
JSON_FIELDS = (
    "time_iso",
    "client",
    "method",
    "path",
    "query",
    "http_version",
    "scheme",
    "host",
    "status",
    "bytes",
    "duration_ms",
    "tls_version",
    "user_agent",
    "referer",
    "request_id",
    "outcome",
)
# Longest X-Request-ID kept from a client; a longer one is cut (and marked) in the log.
MAX_REQUEST_ID = 200
_TLS_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


# How an exchange ended, the ``outcome`` field (docs/logging.md). Plain strings, not an Enum:
# the default line compares one for every request.
Outcome = Literal["complete", "client closed", "aborted"]
COMPLETE: Outcome = "complete"
# The client went away (closed, reset the connection or the HTTP/2 stream) first.
CLIENT_CLOSED: Outcome = "client closed"
# The server cut the response short (the app failed after it had started, or was cancelled).
ABORTED: Outcome = "aborted"


# The status logged for a request the client gave up on before any response head was
# sent (nginx's 499 "client closed request"); a head already sent keeps its own status.
CLIENT_CLOSED_STATUS = 499


class Exchange:
    """One finished exchange as the field functions see it (built only when logging)."""

    __slots__ = ("duration", "outcome", "scope", "size", "status")

    def __init__(self, scope: Scope, status: int, size: int, duration: float, outcome: Outcome) -> None:
        self.scope = scope
        self.status = status
        self.size = size
        self.duration = duration
        self.outcome = outcome


FieldFunction = Callable[[Exchange], str]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _header_field(name: bytes) -> FieldFunction:
    def field(exchange: Exchange) -> str:
        value = _header(exchange.scope, name)
        return "-" if value is None else escape_bytes(value)

    return field


def _method(exchange: Exchange) -> str:
    # WebSocket scopes have no method; the line says what the request was.
    return escape(exchange.scope.get("method", "WEBSOCKET"))


def _query(exchange: Exchange) -> str:
    return escape_bytes(exchange.scope.get("query_string", b""))


def _path_query(exchange: Exchange) -> str:
    path = escape(exchange.scope["path"])
    query = exchange.scope.get("query_string")
    return f"{path}?{escape_bytes(query)}" if query else path


def _target(exchange: Exchange) -> str:
    # As sent: the raw (still percent-encoded) path, like nginx's request line.
    scope = exchange.scope
    query = scope.get("query_string")
    raw = bytes(scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"))
    return escape_bytes(raw + b"?" + query if query else raw)


def _tls_version(exchange: Exchange) -> str:
    tls = exchange.scope.get("extensions", {}).get("tls")
    if not tls:
        return "-"
    return _TLS_NAMES.get(tls.get("tls_version") or 0, "-")


def _client_host(exchange: Exchange) -> str:
    client = exchange.scope.get("client")
    return escape(str(client[0])) if client else "-"


class _RequestIds:
    """Ids for requests that bring no X-Request-ID: a random per-process prefix and a count."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.count = 0

    def __call__(self, exchange: Exchange) -> str:
        value = _header(exchange.scope, b"x-request-id")
        if value:
            text = escape_bytes(value[:MAX_REQUEST_ID])
            return text + "..." if len(value) > MAX_REQUEST_ID else text
        self.count += 1
        return f"{self.prefix}-{self.count:x}"


class _Clock:
    """Log timestamps, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._common = ""

    def common(self, exchange: Exchange) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._common = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        return self._common

    @staticmethod
    def iso(exchange: Exchange) -> str:
        now = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _field_functions() -> dict[str, FieldFunction]:
    clock = _Clock()
    pid = str(os.getpid())
    return {
        "client": lambda exchange: address_label(exchange.scope.get("client")),
        "client_host": _client_host,
        "method": _method,
        "path": lambda exchange: escape(exchange.scope["path"]),
        "query": _query,
        "path_query": _path_query,
        "target": _target,
        "status": lambda exchange: str(exchange.status),
        "bytes": lambda exchange: str(exchange.size),
        "duration": lambda exchange: f"{exchange.duration:.6f}",
        "duration_ms": lambda exchange: f"{exchange.duration * 1000.0:.1f}",
        "http_version": lambda exchange: escape(exchange.scope["http_version"]),
        "scheme": lambda exchange: escape(exchange.scope.get("scheme", "-")),
        "host": _header_field(b"host"),
        "tls_version": _tls_version,
        "user_agent": _header_field(b"user-agent"),
        "referer": _header_field(b"referer"),
        "request_id": _RequestIds(),
        "outcome": lambda exchange: exchange.outcome,
        "time": clock.common,
        "time_iso": clock.iso,
        "pid": lambda exchange: pid,
    }


class AccessLogFormatter:
    """A compiled ``--access-log-format``: turns one finished exchange into one log line."""

    __slots__ = ("_default", "_json", "_json_functions", "_parts", "name")

    def __init__(self, access_log_format: str) -> None:
        self.name = access_log_format
        self._default = access_log_format == "default"
        self._json = access_log_format == "json"
        functions = _field_functions()
        assert set(functions) == set(ACCESS_LOG_FIELDS), "every documented field has a function"
        template = PRESETS.get(access_log_format, access_log_format)
        self._parts: list[str | FieldFunction] = []
        self._json_functions = [functions[name] for name in JSON_FIELDS] if self._json else []
        if not (self._json or self._default):
            for part in parse_log_template(template):
                self._parts.append(functions[part[0]] if isinstance(part, tuple) else part)

    def log_unfinished(
        self, scope: Scope, status_sent: int | None, size: int, duration: float, client_gone: bool
    ) -> None:
        """The line of an exchange that ended before its response was complete.

        The status is the one sent; with no response head sent, 499 when the client left
        (nginx's "client closed request") and 500 when the server cut it short.
        """
        status = status_sent or (CLIENT_CLOSED_STATUS if client_gone else 500)
        self.log(scope, status, size, duration, CLIENT_CLOSED if client_gone else ABORTED)

    @property
    def bare_lines(self) -> bool:
        """Whether lines are written without the time/level prefix (they carry their own)."""
        return not self._default

    def log(self, scope: Scope, status: int, size: int, duration: float, outcome: Outcome = COMPLETE) -> None:
        """Write the access-log line of one exchange (the caller checked the log is on)."""
        if self._default:
            access_logger.info(_default_line(scope, status, size, duration, outcome))
            return
        exchange = Exchange(scope, status, size, duration, outcome)
        if self._json:
            values: dict[str, str | int | float] = {
                name: function(exchange) for name, function in zip(JSON_FIELDS, self._json_functions, strict=True)
            }
            values["status"], values["bytes"] = status, size
            values["duration_ms"] = round(duration * 1000.0, 3)
            access_logger.info(json.dumps(values, ensure_ascii=False))
            return
        access_logger.info("".join([part if isinstance(part, str) else part(exchange) for part in self._parts]))


def _default_line(scope: Scope, status: int, size: int, duration: float, outcome: Outcome) -> str:
    # The default format written out by hand: it runs for every request of most servers.
    # Escaping is per character, so method, path and query are checked in one go, and the
    # common case (nothing to escape) costs three C-level scans, no call (logs.escape).
    query = scope.get("query_string")
    request = f"{scope.get('method', 'WEBSOCKET')} {scope['path']}"
    if query:
        request = f"{request}?{query.decode('utf-8', 'surrogateescape')}"
    if not request.isprintable() or "\\" in request or '"' in request:
        request = escape(request)
    line = (
        f'{address_label(scope.get("client"))} - "{request} '
        f'HTTP/{scope["http_version"]}" {status} {size} {duration * 1000.0:.1f}ms'
    )
    return line if outcome == COMPLETE else f"{line} ({outcome})"


def formatter_for(config: Config) -> AccessLogFormatter | None:
    """The compiled access-log format, or None when access lines would go nowhere."""
    if not config.access_log or not access_logger.isEnabledFor(logging.INFO):
        return None
    return AccessLogFormatter(config.access_log_format)


def setup_logging(config: Config, role: str | None = None) -> None:
    """Logging for ``config`` (see gateway.logs.configure_logging); ConfigError on a bad file."""
    try:
        configure_logging(
            config.log_level,
            config.access_log,
            role,
            access_log_file=config.access_log_file,
            bare_access_lines=config.access_log_format != "default",
            log_config=config.log_config,
        )
    except LoggingSetupError as exc:
        raise ConfigError(str(exc)) from None


def reopen_logs(reason: str) -> None:
    """SIGUSR1: new handles for the log files (after logrotate moved them)."""
    count = reopen_log_files()
    logging.getLogger("gateway.error").info("%s: reopened %d log file(s)", reason, count)
