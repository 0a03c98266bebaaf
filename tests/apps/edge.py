"""A test app that reports what the edge features put in the scope.

HTTP: a JSON object of ``client``, ``scheme``, ``server``, ``host`` (the Host header) and
``path``; under ``/.well-known/acme-challenge/`` it answers ``token <path>`` instead, as an
ACME http-01 responder in the app would. WebSocket: accepts, sends the same JSON object as a
text message, then closes with 1000.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ACME_PREFIX = "/.well-known/acme-challenge/"


def report(scope: Scope) -> bytes:
    """The scope fields under test as JSON."""
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), None)
    fields = {
        "client": list(scope["client"]) if scope["client"] else None,
        "scheme": scope["scheme"],
        "server": list(scope["server"]) if scope["server"] else None,
        "host": host,
        "path": scope["path"],
    }
    return json.dumps(fields).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": report(scope).decode()})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"].startswith(ACME_PREFIX):
        body = f"token {scope['path'][len(ACME_PREFIX) :]}".encode()
    else:
        body = report(scope)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
