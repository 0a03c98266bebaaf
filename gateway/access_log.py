"""The access log: one line per response on the ``gateway.access`` logger.

Format: client address, method, path, HTTP version, status, response body bytes and the
time from request head to the end of the response, e.g.
``127.0.0.1:50312 - "GET /items?page=2 HTTP/1.1" 200 1432 0.8ms``.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from gateway.logs import address_label

access_logger = logging.getLogger("gateway.access")


def log_response(scope: MutableMapping[str, Any], status: int, size: int, duration: float) -> None:
    """Write one access-log line; callers check ``ServerContext.access_log`` first."""
    where = address_label(scope.get("client"))
    path = scope["path"]
    query = scope.get("query_string")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d %d %.1fms',
        where,
        scope.get("method", "WEBSOCKET"),
        path,
        scope["http_version"],
        status,
        size,
        duration * 1000.0,
    )
