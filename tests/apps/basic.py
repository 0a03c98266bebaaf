"""Test apps: an echo app that reports its scope, slow responses, lifespan variants.

The echo app answers ``GET /anything`` with a JSON object of the scope fields tests look at.
``/slow?seconds=S`` sends its body in ten pieces spread over ``S`` seconds, so a test can
tell a completed response from one that was cut off. Lifespan events are printed to stderr
as ``app: lifespan startup`` / ``app: lifespan shutdown`` so a subprocess test can see them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SLOW_PIECES = 10
SLOW_PIECE = b"x" * 100


def _say(text: str) -> None:
    print(f"app: {text}", file=sys.stderr, flush=True)


async def _lifespan(receive: Receive, send: Send, state: dict[str, Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state["started_by"] = "basic.app"
            state["items"] = ["shared"]
            _say("lifespan startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


def _query(scope: Scope) -> dict[str, str]:
    text = scope["query_string"].decode("latin-1")
    return dict(part.partition("=")[::2] for part in text.split("&") if part)


async def _slow(scope: Scope, send: Send) -> None:
    seconds = float(_query(scope).get("seconds", "1"))
    length = str(SLOW_PIECES * len(SLOW_PIECE)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
    for _ in range(SLOW_PIECES):
        await asyncio.sleep(seconds / SLOW_PIECES)
        await send({"type": "http.response.body", "body": SLOW_PIECE, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    _say(f"slow response done ({scope['path']})")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo the scope as JSON; ``/slow`` answers slowly; supports lifespan."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, scope["state"])
        return
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"].endswith("/slow"):
        await _slow(scope, send)
        return
    report = {
        "path": scope["path"],
        "root_path": scope["root_path"],
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
        "state": scope.get("state"),
        "body_size": len(body),
    }
    payload = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


def make_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A factory for ``--factory``: returns the echo app."""
    return app


class _Holder:
    """Gives the app a dotted attribute path: ``basic:holder.inner.app``."""

    def __init__(self, depth: int) -> None:
        if depth:
            self.inner = _Holder(depth - 1)
        else:
            self.app = app


holder = _Holder(1)
not_callable = 42


async def lifespan_failed(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers startup with ``lifespan.startup.failed`` and a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable at startup"})
        return
    await app(scope, receive, send)


async def lifespan_raises(scope: Scope, receive: Receive, send: Send) -> None:
    """Raises during lifespan startup."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("cache warm-up exploded")
    await app(scope, receive, send)


async def django_like(scope: Scope, receive: Receive, send: Send) -> None:
    """Like Django's ASGIHandler: raises on any scope type but http."""
    if scope["type"] != "http":
        raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
    await app(scope, receive, send)


async def shutdown_raises(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts up normally, then raises when asked to shut down."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("flushing the queue failed")
    await app(scope, receive, send)


async def shutdown_hangs(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts up normally, then never answers ``lifespan.shutdown``."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        _say("lifespan shutdown hangs")
        await asyncio.Event().wait()
        return
    await app(scope, receive, send)


def _starting(seconds: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def starting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            _say("lifespan startup begins")
            await asyncio.sleep(seconds)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            _say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await app(scope, receive, send)

    return starting


# Lifespan startup that takes a second, and one that never finishes.
startup_slow = _starting(1.0)
startup_hangs = _starting(3600.0)
