"""The app behind ``benchmarks/shutdown_no_loss.py``: slow, checkable responses and a WebSocket echo.

``GET /work?id=ID&ms=MS&size=SIZE`` notes ``ID`` (and the worker's pid) in the file named by
``ASGIGW_ACCEPT_LOG`` the moment the app receives the request, waits ``MS`` ms, then sends
``SIZE`` bytes in four pieces spread over another ``MS`` ms, so responses are in flight when
the server is stopped. The body is ``ID.`` repeated, so a client can check every byte.
``/ws`` echoes every message.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs

_PIECES = 4


def expected_body(request_id: str, size: int) -> bytes:
    """The body ``/work`` sends for ``request_id``."""
    unit = request_id.encode() + b"."
    return (unit * (size // len(unit) + 1))[:size]


def _note_accepted(request_id: str) -> None:
    path = os.environ.get("ASGIGW_ACCEPT_LOG")
    if not path:
        return
    # One short O_APPEND write per line: lines of several workers never interleave.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{os.getpid()} {request_id}\n".encode())
    finally:
        os.close(descriptor)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _work(scope: dict[str, Any], receive: Any, send: Any) -> None:
    query = parse_qs(scope["query_string"].decode())
    request_id = query.get("id", ["-"])[0]
    delay = int(query.get("ms", ["0"])[0]) / 1000
    size = int(query.get("size", ["1000"])[0])
    _note_accepted(request_id)
    body = expected_body(request_id, size)
    await asyncio.sleep(delay)
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    step = -(-size // _PIECES)
    for start in range(0, size, step):
        await asyncio.sleep(delay / _PIECES)
        await send({"type": "http.response.body", "body": body[start : start + step], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


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
    """``/work`` (HTTP), ``/ws`` (WebSocket echo) and lifespan."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "websocket":
        await _echo(receive, send)
    elif scope["type"] == "http":
        await _work(scope, receive, send)
