"""ASGI application side: scope building, message types and validation, app errors.

This is the only module that builds ASGI dicts from stream events. Streams call
:func:`build_http_scope` once per request and use the validators here on every message the
app sends; anything that breaks the ASGI spec raises :class:`ASGIMessageError`, which the
stream turns into a 500 or a closed connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal, TypedDict
from urllib.parse import unquote

from gateway.events import ConnectionInfo, Headers, Request
from gateway.logs import address_label, escape
from gateway.proxy_headers import Forwarded

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
error_log = logging.getLogger("gateway.error")


class HTTPRequestMessage(TypedDict):
    """``http.request``: a piece of the request body."""

    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectMessage(TypedDict):
    """``http.disconnect``: the client is gone or the response is complete."""

    type: Literal["http.disconnect"]


class ASGIMessageError(RuntimeError):
    """The application sent a message the ASGI spec does not allow at this point."""


class ClientDisconnected(OSError):
    """Raised from ``send()`` when the client has gone away (ASGI spec: an OSError)."""


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into raw path and query string.

    Absolute-form targets (RFC 9112 §3.2.2, sent to proxies) are reduced to their path.
    """
    if target[:1] != b"/" and (target[:7].lower() == b"http://" or target[:8].lower() == b"https://"):
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    path, _, query = target.partition(b"?")
    return path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a raw path into text; UTF-8 sequences become characters."""
    text = raw_path.decode("latin-1")
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def build_http_scope(
    request: Request,
    info: ConnectionInfo,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
) -> Scope:
    """The ASGI HTTP connection scope for ``request`` on a connection described by ``info``.

    ``path`` includes ``root_path``: the ASGI spec derives PATH_INFO by stripping root_path
    from path, so the server, which was told the app is mounted there, puts it in front.
    """
    target = request.target
    if target[:1] == b"/":  # origin-form, as nearly every request: split_target inlined
        raw_path, _, query = target.partition(b"?")
    else:
        raw_path, query = split_target(target)
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = decode_path(raw_path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode() + raw_path
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "method": request.method.decode("ascii"),
        "scheme": request.scheme or ("https" if info.tls else "http"),
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": request.headers,
        "client": info.client,
        "server": info.server,
        "extensions": extensions,
    }
    if info.proxies is not None:
        _apply_forwarded(scope, info.proxies.resolve(info.client, request.headers))
    if state is not None:
        # ASGI lifespan spec: each request gets a shallow copy of the lifespan state.
        scope["state"] = state.copy()
    if info.tls_extension is not None:
        extensions["tls"] = info.tls_extension
    return scope


def _apply_forwarded(scope: Scope, forwarded: Forwarded) -> None:
    """What trusted proxies said about the client (gateway/proxy_headers.py) goes in the scope."""
    scope["client"] = forwarded.client
    if forwarded.scheme is not None:
        # A WebSocket scope maps https to wss after this (build_websocket_scope).
        scope["scheme"] = "https" if forwarded.scheme in ("https", "wss") else "http"
    if forwarded.host is not None:
        host = forwarded.host.encode("ascii")
        scope["headers"] = [(b"host", host)] + [(n, v) for n, v in scope["headers"] if n != b"host"]
        name, _, port = forwarded.host.rpartition(":") if not forwarded.host.endswith("]") else ("", "", "")
        if not name or not port.isdigit():
            name, port = forwarded.host, "443" if scope["scheme"] == "https" else "80"
        scope["server"] = (name.strip("[]"), int(port))


def build_websocket_scope(
    request: Request,
    info: ConnectionInfo,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
    subprotocols: list[str],
) -> Scope:
    """The ASGI WebSocket connection scope for an HTTP/1.1 Upgrade or HTTP/2 CONNECT.

    The scheme is ``wss`` whenever the request came over TLS (or HTTP/2 said ``https``).
    """
    scope = build_http_scope(request, info, root_path, state, extensions)
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = subprotocols
    return scope


def validate_headers(headers: object) -> Headers:
    """Check that the app's headers are an iterable of (bytes, bytes) pairs; return a list."""
    if type(headers) is not list and (not isinstance(headers, Iterable) or isinstance(headers, (bytes, str, dict))):
        raise ASGIMessageError(f"'headers' must be a list of [name, value] pairs, got {type(headers).__name__}")
    checked: Headers = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ASGIMessageError(f"each header must be a [name, value] pair, got {item!r}") from None
        if type(name) is not bytes or type(value) is not bytes:
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                raise ASGIMessageError(f"header name and value must be bytes, got {item!r}")
            name, value = bytes(name), bytes(value)
        checked.append((name, value))
    return checked


def validate_status(status: object) -> int:
    """Check an ``http.response.start`` status: an int from 200 to 599."""
    if type(status) is not int or not 200 <= status <= 599:
        raise ASGIMessageError(f"'status' must be an int from 200 to 599, got {status!r}")
    return status


def body_of(message: Message) -> bytes:
    """The ``body`` of an ``http.response.body`` message, checked to be bytes."""
    body = message.get("body", b"")
    if type(body) is not bytes:
        if isinstance(body, (bytearray, memoryview)):
            return bytes(body)
        raise ASGIMessageError(f"'body' must be bytes, got {type(body).__name__}")
    return body


def log_app_exception(scope: Scope, exc: BaseException) -> None:
    """Log an application failure once, with its traceback (STYLE: app errors get one)."""
    where = address_label(scope.get("client"))
    error_log.error(
        "Exception in ASGI application (%s %s %s)",
        where,
        escape(scope.get("method", scope["type"])),
        escape(scope.get("path", "")),
        exc_info=exc,
    )


def log_app_problem(scope: Scope, problem: str) -> None:
    """Log an application mistake that has no exception (e.g. returned without responding)."""
    where = address_label(scope.get("client"))
    method, path = escape(scope.get("method", "")), escape(scope.get("path", ""))
    error_log.error("ASGI application error (%s %s %s): %s", where, method, path, problem)
