"""HTTP -> HTTPS: the ``--redirect-http`` listener and plain HTTP sent to a TLS port.

Both are answered by asgigw itself, through the normal HTTP/1.1 (and h2c) machinery, by
the small ASGI responders here, which a connection serves instead of the application
(``ConnectionInfo.listener_app``): so bad requests get 400, slow ones time out and every
answer has its access-log line, like any other response.

Before redirecting, :class:`HTTPSRedirect` asks its ``first`` responders, in order, whether
they answer the request themselves: ACME http-01 challenges (``/.well-known/acme-challenge/``,
RFC 8555 §8.3), which must be reachable over plain HTTP, go to :class:`HTTP01Responder`
with ``--acme-domain`` (the gateway's own ACME client), else through :class:`AppPassage`
to the application, which may run an ACME client of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.asgi import ASGIApp, Receive, Scope, Send

ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
PLAIN_HTTP_ON_TLS_PORT = b"400 Bad Request: the plain HTTP request was sent to the HTTPS port; use https://.\n"
# RFC 3986 §3.2.2 host (reg-name, IPv4, [IPv6]) with an optional port: all a Host header may
# hold before it is put into a Location header.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(:[0-9]{0,5})?")


class PlainHTTPResponder(Protocol):
    """Something that may answer a plain-HTTP request before it is redirected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer and return True, or return False without sending anything."""


class AppPassage:
    """Lets requests under ``prefixes`` through to the application over plain HTTP."""

    def __init__(self, app: ASGIApp, prefixes: Sequence[str] = (ACME_CHALLENGE_PREFIX,)) -> None:
        self._app = app
        self._prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Run the app for a path under one of the prefixes."""
        if scope["type"] == "http" and scope["path"].startswith(self._prefixes):
            await self._app(scope, receive, send)
            return True
        return False


class ChallengeAnswers(Protocol):
    """Where http-01 answers come from (gateway/acme/challenges.py's ChallengeFiles)."""

    def http01_answer(self, path: str) -> bytes | None:
        """The body for ``GET path``, or None when no such challenge is being validated."""


class HTTP01Responder:
    """ACME http-01 (RFC 8555 §8.3), answered by the gateway: the key authorization, or 404.

    With --acme-domain the gateway owns ``/.well-known/acme-challenge/``: a token it does not
    know is a 404, never a redirect (a CA does not follow one to a certificate it lacks).
    """

    def __init__(self, answers: ChallengeAnswers) -> None:
        self._answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a challenge path; leave everything else to the redirect."""
        if scope["type"] != "http" or not scope["path"].startswith(ACME_CHALLENGE_PREFIX):
            return False
        answer = self._answers.http01_answer(scope["path"])
        if answer is None:
            await _answer(send, 404, [], b"no such ACME challenge\n")
        else:
            await _answer(send, 200, [], answer)
        return True


def https_url(scope: Scope, https_port: int, scheme: str = "https") -> str:
    """The https URL of the request in ``scope``: same host, ``https_port``, path and query.

    ``scheme`` is ``wss`` for a WebSocket handshake.

    The host comes from the Host header (HTTP/2: ``:authority``), falling back to the
    address the client connected to; the port is left out when it is 443.
    """
    host = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    match = _HOST.fullmatch(host)
    if match is not None:
        name = match.group(1)
    else:
        server = scope.get("server")
        name = str(server[0]) if server else "localhost"
        name = f"[{name}]" if ":" in name else name
    authority = name if https_port == 443 else f"{name}:{https_port}"
    target = scope["raw_path"].decode("latin-1") or "/"
    query = scope.get("query_string", b"")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    return f"{scheme}://{authority}{target}"


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HTTPSRedirect:
    """The ``--redirect-http`` listener's app: 308 to the HTTPS listener for every request.

    308 (RFC 9110 §15.4.9) keeps the method and body, so a POST is repeated as a POST.
    A WebSocket handshake gets the same 308 when the server offers the ASGI
    ``websocket.http.response`` extension (browsers do not follow it, but other clients do).
    """

    def __init__(self, https_port: int, first: Sequence[PlainHTTPResponder] = (), *, close: bool = False) -> None:
        self.https_port = https_port
        self._first = tuple(first)
        # Plain HTTP on the TLS port: the connection closes after the answer.
        self._close = [(b"connection", b"close")] if close else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (the ASGI app interface)."""
        if scope["type"] not in ("http", "websocket"):
            return
        for responder in self._first:
            if await responder(scope, receive, send):
                return
        url = https_url(scope, self.https_port, "https" if scope["type"] == "http" else "wss")
        headers = [(b"location", url.encode("latin-1")), *self._close]
        body = b"Redirecting to HTTPS\n"
        if scope["type"] == "http":
            await _answer(send, 308, headers, body)
        else:
            await _refuse_websocket(scope, send, 308, headers, body)


class PlainHTTPOnTLSPort:
    """A cleartext request on a TLS listener: ``400`` and an explanation, then close."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (the ASGI app interface)."""
        headers = [(b"connection", b"close")]
        if scope["type"] == "http":
            await _answer(send, 400, headers, PLAIN_HTTP_ON_TLS_PORT)
        elif scope["type"] == "websocket":
            await _refuse_websocket(scope, send, 400, headers, PLAIN_HTTP_ON_TLS_PORT)


async def _refuse_websocket(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    extensions: dict[str, Any] = scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
