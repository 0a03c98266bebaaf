"""ASGI test apps for the HTTP/1.1 tests: an echo app, broken apps, slow and bulk apps.

``slow_reader`` is served by a ``python -m gateway`` subprocess in the backpressure test, so
this module imports nothing heavy: the subprocess's memory is what that test measures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away (or was refused) first."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def respond(send: Send, body: bytes, status: int = 200, headers: list[Any] | None = None) -> None:
    """A complete response with a Content-Length."""
    fields = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the scope fields tests look at and the size of the request body."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if body is None:
        return
    report = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "client_host": scope["client"][0] if scope["client"] else None,
        "client_port": scope["client"][1] if scope["client"] else None,
        "body_length": len(body),
    }
    await respond(send, json.dumps(report).encode(), headers=[(b"content-type", b"application/json")])


# -- broken apps: each breaks the ASGI contract in one way ----------------------------------


async def _raise_before_start(send: Send) -> None:
    raise ValueError("boom before start")


async def _raise_after_start(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    raise ValueError("boom after start")


async def _raise_after_chunk(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("boom after a chunk")


async def _no_response(send: Send) -> None:
    return None


async def _unknown_type(send: Send) -> None:
    await send({"type": "http.response.bogus"})


async def _str_body(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": "text, not bytes"})


async def _start_twice(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def _status_string(send: Send) -> None:
    await send({"type": "http.response.start", "status": "200", "headers": []})


async def _headers_not_bytes(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [("content-type", "text/plain")]})


async def _returned_mid_body(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})


FAILURES: dict[str, tuple[Callable[[Send], Awaitable[None]], str, bool]] = {
    # path: (what the app does, what the client must see, logged with a traceback). The
    # response head waits for the first body message (ASGI spec), so an app that fails
    # before any body was accepted still gets a clean 500.
    "raise-before-start": (_raise_before_start, "500", True),
    "raise-after-start": (_raise_after_start, "truncated", True),
    "raise-after-chunk": (_raise_after_chunk, "truncated", True),
    "no-response": (_no_response, "500", False),
    "unknown-type": (_unknown_type, "500", True),
    "str-body": (_str_body, "500", True),
    "start-twice": (_start_twice, "500", True),
    "status-string": (_status_string, "500", True),
    "headers-not-bytes": (_headers_not_bytes, "500", True),
    "returned-mid-body": (_returned_mid_body, "truncated", False),
}


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    """``/<failure name>`` fails as :data:`FAILURES` says; ``/ok`` answers ``ok``."""
    if scope["type"] != "http":
        return
    name = scope["path"].strip("/")
    if name == "ok":
        await respond(send, b"ok")
        return
    await FAILURES[name][0](send)


# -- flow control ---------------------------------------------------------------------------


async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body at ``?rate=BYTES_PER_SECOND`` and answer with the number of bytes read.

    The rate is far below what loopback delivers, so a server that kept reading from the
    socket while the app lags would have to buffer the difference.
    """
    if scope["type"] != "http":
        return
    rate = int(scope["query_string"].decode().partition("rate=")[2] or 10_000_000)
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        piece = len(message.get("body", b""))
        received += piece
        if not message.get("more_body", False):
            break
        await asyncio.sleep(piece / rate)
    await respond(send, str(received).encode())
