"""What the access log and the metrics learn of one HTTP exchange.

An :class:`ExchangeRecord` exists only when ``--access-log`` or ``--metrics-bind`` is on,
so a server with neither pays one ``None`` test per request. It keeps when the exchange
started and writes the access line and the metrics once the response is complete, or once
the exchange ended without it (the status sent, or 499 when no head went out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.access_log import CLIENT_CLOSED, COMPLETE

if TYPE_CHECKING:
    from gateway.asgi import Scope
    from gateway.context import ServerContext

# The status recorded for an exchange that ended before any response head went out
# (nginx's convention for "client closed the request").
NO_RESPONSE = 499


class ExchangeRecord:
    """The access line and metrics of one exchange (each when enabled)."""

    __slots__ = ("_context", "_scope", "_started_at")

    def __init__(self, context: ServerContext, scope: Scope) -> None:
        self._context = context
        self._scope = scope
        self._started_at = context.event_loop().time()

    def complete(self, status: int, response_bytes: int, request_bytes: int, client_gone: bool) -> None:
        """The whole response went out."""
        context = self._context
        duration = context.event_loop().time() - self._started_at
        scope = self._scope
        if context.metrics is not None:
            context.metrics.response(
                scope["method"], status, scope["http_version"], duration, response_bytes, request_bytes
            )
        if context.access_log is not None:
            outcome = CLIENT_CLOSED if client_gone else COMPLETE
            context.access_log.log(scope, status, response_bytes, duration, outcome)

    def unfinished(self, status: int | None, response_bytes: int, request_bytes: int, client_gone: bool) -> None:
        """The exchange ended first; ``status`` is None when no response head went out."""
        context = self._context
        duration = context.event_loop().time() - self._started_at
        scope = self._scope
        if context.metrics is not None:
            context.metrics.response(
                scope["method"],
                status or NO_RESPONSE,
                scope["http_version"],
                duration,
                response_bytes,
                request_bytes,
            )
        if context.access_log is not None:
            context.access_log.log_unfinished(scope, status, response_bytes, duration, client_gone)
