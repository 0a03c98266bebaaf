"""A WebSocket echo app: ``asgigw examples.websocket_echo:app`` then connect to wss://localhost:8000/.

Plain ASGI, no framework: it accepts every connection (choosing the first subprotocol the
client offers), sends every text or bytes message straight back, and answers ordinary HTTP
requests with a short hint. Used by the WebSocket tests and ``benchmarks/websocket.py``.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo WebSocket messages; say what this is to HTTP clients."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        body = b"WebSocket echo: connect with ws:// or wss://\n"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    subprotocols = scope.get("subprotocols") or [None]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
