"""An ASGI app with one route per case of the response filter (--compress, --hsts, --header)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

PAGE = b"".join(b"<p>row %d of a page that compresses well, as HTML does</p>\n" % number for number in range(340))
assert 19_000 < len(PAGE) < 21_000
ETAG = b'"page-v1"'


class EdgeApp:
    """Routes by path; ``gates`` let a test release the next piece of a streaming response."""

    def __init__(self, pathsend_file: Path | None = None) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.pathsend_file = pathsend_file

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hello " * 500})
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        handler = getattr(self, "route_" + path.strip("/").replace("-", "_"), None)
        if handler is None:
            await _respond(send, 404, [(b"content-type", b"text/plain")], b"no route")
            return
        await handler(scope, send)

    async def route_page(self, scope: dict[str, Any], send: Any) -> None:
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"etag", ETAG), (b"accept-ranges", b"bytes")]
        await _respond(send, 200, [*headers, (b"content-length", b"%d" % len(PAGE))], PAGE)

    async def route_no_length(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 200, [(b"content-type", b"text/html")], PAGE)

    async def route_small(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 200, [(b"content-type", b"text/html"), (b"content-length", b"100")], b"x" * 100)

    async def route_json(self, scope: dict[str, Any], send: Any) -> None:
        body = b'{"rows": [' + b",".join(b'{"n": %d}' % n for n in range(500)) + b"]}"
        await _respond(send, 200, [(b"content-type", b"application/problem+json")], body)

    async def route_image(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 200, [(b"content-type", b"image/png")], PAGE)

    async def route_encoded(self, scope: dict[str, Any], send: Any) -> None:
        headers = [(b"content-type", b"text/html"), (b"content-encoding", b"identity-by-app")]
        await _respond(send, 200, headers, PAGE)

    async def route_no_transform(self, scope: dict[str, Any], send: Any) -> None:
        headers = [(b"content-type", b"text/html"), (b"cache-control", b"private, No-Transform")]
        await _respond(send, 200, headers, PAGE)

    async def route_vary(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 200, [(b"content-type", b"text/html"), (b"vary", b"Cookie")], PAGE)

    async def route_partial(self, scope: dict[str, Any], send: Any) -> None:
        headers = [(b"content-type", b"text/html"), (b"content-range", b"bytes 0-1999/20000")]
        await _respond(send, 206, headers, PAGE[:2000])

    async def route_no_content(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 204, [(b"content-type", b"text/html")], b"")

    async def route_not_modified(self, scope: dict[str, Any], send: Any) -> None:
        await _respond(send, 304, [(b"content-type", b"text/html"), (b"etag", ETAG)], b"")

    async def route_own_headers(self, scope: dict[str, Any], send: Any) -> None:
        headers = [
            (b"content-type", b"text/plain"),
            (b"x-frame-options", b"SAMEORIGIN"),
            (b"Strict-Transport-Security", b"max-age=60"),
        ]
        await _respond(send, 200, headers, b"own")

    async def route_fail(self, scope: dict[str, Any], send: Any) -> None:
        raise RuntimeError("this route fails on purpose")

    async def route_trailers(self, scope: dict[str, Any], send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": PAGE})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})

    async def route_pathsend(self, scope: dict[str, Any], send: Any) -> None:
        assert self.pathsend_file is not None
        size = self.pathsend_file.stat().st_size
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % size)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(self.pathsend_file)})

    async def route_events(self, scope: dict[str, Any], send: Any) -> None:
        """Server-sent events: the second waits until the test has decoded the first."""
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        gate = self.gate(scope["query_string"].decode())
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        for _ in range(500):  # at most 10 s
            if gate.is_set():
                break
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
