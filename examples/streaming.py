"""Streaming responses in plain ASGI: ``asgigw --app-dir examples streaming:app``.

Then, with curl (``-N`` shows each piece as it arrives; ``-k`` or ``asgigw certs trust``
for the development certificate):

    curl -kN https://127.0.0.1:8000/stream?pieces=5&interval=0.5
    curl -kN https://127.0.0.1:8000/events?count=3

``/stream`` sends a text body in ``pieces`` parts (default 5, at most 100), ``interval``
seconds apart (default 0.5, at most 2): each part is one ``http.response.body`` message
with ``more_body``, which asgigw writes at once (a chunk in HTTP/1.1, a DATA frame in
HTTP/2). ``/events`` is a Server-Sent Events stream (``text/event-stream``, as in the HTML
standard's EventSource): ``count`` events (default 10, at most 1000) one ``interval`` apart,
each with an ``id``, so that a reconnecting EventSource sends ``Last-Event-ID`` and the
stream resumes after it. Both stop early when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

MAX_PIECES = 100
MAX_EVENTS = 1000
MAX_INTERVAL = 2.0
RETRY_MILLISECONDS = 2000  # how long EventSource waits before reconnecting


def _number(query: dict[str, list[str]], name: str, default: float, highest: float) -> float:
    """A query parameter as a number between 0 and ``highest`` (``default`` if absent or bad)."""
    try:
        value = float(query[name][0])
    except (KeyError, ValueError):
        return default
    return min(max(value, 0.0), highest)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _pieces(count: int, interval: float) -> AsyncIterator[bytes]:
    for number in range(1, count + 1):
        yield f"piece {number} of {count} at {time.strftime('%H:%M:%S')}\n".encode()
        if number < count:
            await asyncio.sleep(interval)


async def _events(first: int, count: int, interval: float) -> AsyncIterator[bytes]:
    # Field syntax from the HTML standard's "event stream" format: lines of "field: value",
    # an empty line ends each event; "retry" sets the reconnection delay.
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    for number in range(first, first + count):
        data = json.dumps({"tick": number, "time": time.time()})
        yield f"id: {number}\nevent: tick\ndata: {data}\n\n".encode()
        if number < first + count - 1:
            await asyncio.sleep(interval)


async def _send_stream(receive: Any, send: Any, content_type: bytes, body: AsyncIterator[bytes]) -> None:
    """Send ``body`` piece by piece, stopping early if the client disconnects."""
    disconnected = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    watcher = asyncio.ensure_future(watch())
    headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for piece in body:
            if disconnected.is_set():
                return
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()


async def _send_text(send: Any, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/stream`` and ``/events`` stream; anything else gets a short text saying so."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return  # no WebSocket here: returning before accepting refuses the handshake (403)
    query = parse_qs(scope["query_string"].decode("latin-1"))
    interval = _number(query, "interval", 0.5, MAX_INTERVAL)
    if scope["path"] == "/stream":
        pieces = int(_number(query, "pieces", 5, MAX_PIECES))
        await _send_stream(receive, send, b"text/plain; charset=utf-8", _pieces(pieces, interval))
    elif scope["path"] == "/events":
        count = int(_number(query, "count", 10, MAX_EVENTS))
        last_id = _header(scope, b"last-event-id")
        first = int(last_id) + 1 if last_id and last_id.isdigit() else 1
        await _send_stream(receive, send, b"text/event-stream", _events(first, count, interval))
    else:
        await _send_text(send, 404 if scope["path"] != "/" else 200, "try /stream or /events\n")
