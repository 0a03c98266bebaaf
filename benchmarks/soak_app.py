"""The app behind ``benchmarks/soak.py``: small answers, streamed transfers, a WebSocket echo, stats.

- ``/hello``: 13 bytes.
- ``/download?size=N``: ``N`` bytes streamed in 64 KiB pieces (never held whole).
- ``/upload`` (POST): reads the body and answers with its length.
- ``/ws``: echoes every message.
- ``/stats``: JSON with the number of asyncio tasks in the server process and the requests
  and WebSockets in progress per protocol. It is the app's view, so sampling it costs the
  gateway nothing beyond one more request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

_PIECE = bytes(64 * 1024)
_in_progress = {"http/1.1": 0, "http/2": 0, "websocket": 0}


async def _respond(send: Any, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _download(scope: dict[str, Any], send: Any) -> None:
    size = int(parse_qs(scope["query_string"].decode()).get("size", ["0"])[0])
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    left = size
    while left > 0:
        piece = _PIECE if left >= len(_PIECE) else _PIECE[:left]
        left -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
    if size == 0:
        await send({"type": "http.response.body", "body": b""})


async def _upload(receive: Any, send: Any) -> None:
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _respond(send, b"%d" % received)


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/stats":
        report = {"tasks": len(asyncio.all_tasks()), "in_progress": _in_progress}
        await _respond(send, json.dumps(report).encode(), b"application/json")
    elif path == "/download":
        await _download(scope, send)
    elif path == "/upload":
        await _upload(receive, send)
    else:
        await _respond(send, b"Hello, world!")


async def _echo(receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {key: value for key, value in message.items() if key in ("text", "bytes") and value is not None}
        await send({"type": "websocket.send", **reply})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Routes above; lifespan accepted and ignored."""
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    key = "websocket" if kind == "websocket" else f"http/{scope['http_version']}"
    _in_progress[key] = _in_progress.get(key, 0) + 1
    try:
        if kind == "websocket":
            await _echo(receive, send)
        else:
            await _http(scope, receive, send)
    finally:
        _in_progress[key] -= 1
