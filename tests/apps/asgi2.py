"""ASGI 2 ("double-callable") test apps: ``app(scope)`` returns the instance that is awaited.

``EchoApp`` is a class, the Channels-2 shape: ``GET`` answers a JSON report of the scope,
a WebSocket echoes text, lifespan startup stores a marker in the state. ``make_instance`` is
the same app as a plain function of one argument. Lifespan events are printed to stderr so
a subprocess test can see them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EchoApp:
    """One instance per connection scope, as the ASGI spec's legacy form requires."""

    # Instances created so far in this process; each reports its own number.
    created = 0

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        EchoApp.created += 1
        self.serial = EchoApp.created

    async def __call__(self, receive: Receive, send: Send) -> None:
        kind = self.scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(receive, send)
        else:
            await self._http(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.scope["state"]["started_by"] = "asgi2.EchoApp"
                print("app: asgi2 lifespan startup", file=sys.stderr, flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        report = {
            "interface": "asgi2",
            "path": self.scope["path"],
            "state": self.scope.get("state"),
            "serial": self.serial,
            "pid": os.getpid(),
        }
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(report).encode()})

    async def _websocket(self, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": f"asgi2 echo: {message.get('text')}"})


def make_instance(scope: Scope) -> EchoApp:
    """The same app as a plain function of one argument."""
    return EchoApp(scope)
