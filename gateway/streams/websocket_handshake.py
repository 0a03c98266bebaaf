"""The WebSocket opening handshake as pure functions: no I/O, no ASGI.

HTTP/1.1 clients upgrade a GET request (RFC 6455 §4.2.1); HTTP/2 clients open a stream with
an extended CONNECT whose ``:protocol`` is ``websocket`` (RFC 8441 §4-5), which has no
Sec-WebSocket-Key/Accept. Both carry the same subprotocol and extension headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from gateway.events import Headers, Request

# RFC 6455 §1.3: the GUID concatenated with the client's key to prove the server read it.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = b"13"


class HandshakeError(Exception):
    """The request is not a valid WebSocket handshake; answer ``status`` with ``headers``."""

    def __init__(self, status: int, reason: str, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers: Headers = headers or []


def header_tokens(headers: Headers, name: bytes) -> list[str]:
    """The comma-separated elements of every ``name`` field, stripped, in order."""
    tokens: list[str] = []
    for field_name, value in headers:
        if field_name.lower() == name:
            tokens.extend(item.strip() for item in value.decode("latin-1").split(",") if item.strip())
    return tokens


def is_websocket_upgrade(method: bytes, headers: Headers) -> bool:
    """True for an HTTP/1.1 request that asks to upgrade to WebSocket (RFC 6455 §4.2.1)."""
    if method != b"GET":
        return False
    return any(token.lower() == "websocket" for token in header_tokens(headers, b"upgrade"))


def is_websocket_connect(request: Request) -> bool:
    """True for an HTTP/2 extended CONNECT that opens a WebSocket (RFC 8441 §4)."""
    return request.method == b"CONNECT" and request.protocol == "websocket"


def check_handshake(request: Request) -> bytes | None:
    """Validate the handshake; return the HTTP/1.1 Sec-WebSocket-Key (``None`` on HTTP/2).

    Raises :class:`HandshakeError` with the status to answer: 400 for a malformed request
    (RFC 6455 §4.2.2 "MUST ... return an appropriate HTTP error code (such as 400)"), 426
    with ``Sec-WebSocket-Version: 13`` for an unsupported version (RFC 6455 §4.4).
    """
    headers = request.headers
    versions = [value.strip() for name, value in headers if name.lower() == b"sec-websocket-version"]
    if versions != [SUPPORTED_VERSION]:
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version", [(b"sec-websocket-version", SUPPORTED_VERSION)])
    if request.http_version == "2":
        # RFC 8441 §5: the key/accept exchange and Upgrade/Connection are not used on HTTP/2.
        if not is_websocket_connect(request):
            raise HandshakeError(400, "expected CONNECT with :protocol websocket")
        return None
    if request.http_version != "1.1" or request.method != b"GET":
        raise HandshakeError(400, "a WebSocket handshake is an HTTP/1.1 GET")
    if not any(token.lower() == "upgrade" for token in header_tokens(headers, b"connection")):
        raise HandshakeError(400, "missing 'Connection: Upgrade'")
    if not any(name.lower() == b"host" for name, _ in headers):
        raise HandshakeError(400, "missing Host")
    keys = [value.strip() for name, value in headers if name.lower() == b"sec-websocket-key"]
    if len(keys) != 1:
        raise HandshakeError(400, "expected exactly one Sec-WebSocket-Key")
    try:
        # RFC 6455 §4.1: the key is 16 random bytes, base64-encoded.
        decoded = base64.b64decode(keys[0], validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 base64-encoded bytes")
    return keys[0]


def accept_token(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 §4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())


def requested_subprotocols(headers: Headers) -> list[str]:
    """The subprotocols the client offers, in its order of preference (RFC 6455 §11.3.4)."""
    return header_tokens(headers, b"sec-websocket-protocol")


def requested_extensions(headers: Headers) -> list[str]:
    """The extension offers, e.g. ``permessage-deflate; client_max_window_bits``."""
    return header_tokens(headers, b"sec-websocket-extensions")


def accept_headers(key: bytes | None, subprotocol: str | None, extensions: bytes | None) -> Headers:
    """Handshake response fields: 101 fields on HTTP/1.1 (``key`` given), 200 fields on HTTP/2."""
    headers: Headers = []
    if key is not None:
        headers += [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(key)),
        ]
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    if extensions is not None:
        headers.append((b"sec-websocket-extensions", extensions))
    return headers
