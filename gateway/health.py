"""``--health-path``: a health check answered by the gateway itself, without the app.

Load balancers poll it to know whether to send traffic here: ``200 ok`` while serving,
``503 draining`` (with ``Connection: close``) once a graceful shutdown has begun, so the
balancer takes this process out before its listeners close. It is a tiny ASGI app run in
place of the application for that one path, so it goes through the same response code
(HTTP/1.1 and HTTP/2, access log) as any request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


class HealthCheck:
    """The ASGI app of ``--health-path``; ``draining()`` says whether shutdown has begun."""

    def __init__(self, path: str, draining: Callable[[], bool]) -> None:
        self.path = path
        self._draining = draining

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer 200 or 503; a HEAD gets the same head without the body."""
        draining = self._draining()
        headers = [*HEADERS, (b"connection", b"close")] if draining else HEADERS
        await send({"type": "http.response.start", "status": 503 if draining else 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"draining\n" if draining else b"ok\n"})
