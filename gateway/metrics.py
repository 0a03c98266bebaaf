"""Counters the layers bump while serving: plain ints and dicts, no locks, no I/O.

Each layer that has something to count calls one method of :class:`Metrics` (held by the
``ServerContext``, ``None`` without ``--metrics-bind``, so a server without metrics pays
one attribute test). ``metrics_export.py`` copies the values into prometheus-client once a
second, off the hot path, and serves them; this module never imports it.
"""

from __future__ import annotations

# Label values must stay few: a client can send any method, so others count as "OTHER".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "WEBSOCKET"})


class Metrics:
    """What one process has served since it started (gauges: what is open now)."""

    __slots__ = (
        "app_exceptions",
        "durations",
        "h2_resets",
        "h2_streams",
        "received_bytes",
        "rejections",
        "requests",
        "sent_bytes",
        "tls_handshake_failures",
        "tls_handshakes",
        "websockets",
        "worker_restarts",
    )

    def __init__(self) -> None:
        # (method, status, HTTP version) -> responses.
        self.requests: dict[tuple[str, str, str], int] = {}
        # Request durations (seconds) not yet handed to the histogram.
        self.durations: list[float] = []
        self.received_bytes = 0
        self.sent_bytes = 0
        self.websockets = 0
        self.tls_handshakes = 0
        self.tls_handshake_failures = 0
        self.h2_streams = 0
        self.h2_resets = 0
        # Reason ("rate_limit", "concurrency", "smuggling", "header_timeout", ...) -> count.
        self.rejections: dict[str, int] = {}
        self.app_exceptions = 0
        self.worker_restarts = 0

    def response(self, method: str, status: int, http_version: str, duration: float, sent: int, received: int) -> None:
        """One exchange finished (or ended unfinished with the status it had): its body bytes."""
        key = (method if method in KNOWN_METHODS else "OTHER", str(status), http_version)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.durations.append(duration)
        self.sent_bytes += sent
        self.received_bytes += received

    def rejected(self, reason: str) -> None:
        """A request or connection refused by a limit, a check or a timeout."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
