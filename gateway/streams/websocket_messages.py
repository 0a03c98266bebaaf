"""ASGI ``websocket.*`` messages <-> wsproto message events, checked on the way.

:class:`MessageAssembler` joins the fragments of one inbound message and enforces
``--ws-max-message-size``; the functions check what the app sends (ASGI WebSocket spec) and
say exactly what is wrong.
"""

from __future__ import annotations

import struct
from typing import Any

from wsproto.events import BytesMessage, TextMessage

from gateway.asgi import ASGIMessageError, ClientDisconnected, Message, validate_headers
from gateway.events import Headers

# Fields the handshake owns; the app's websocket.accept headers may not override them.
_HANDSHAKE_FIELDS = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions", b"sec-websocket-protocol")
)


class WebSocketClosedError(ClientDisconnected):
    """Raised from ``send()`` once the WebSocket is closed (ASGI: an ``OSError`` subclass)."""


class MessageTooBig(Exception):
    """An inbound message grew past ``--ws-max-message-size`` (close 1009, RFC 6455 §7.4.1)."""


class MessageAssembler:
    """Collects message fragments (RFC 6455 §5.4) into one ``websocket.receive``.

    A peer may split a message into one-byte frames. Keeping every fragment as its own
    object would cost some 50 bytes of memory per byte of message, so every
    ``_COALESCE`` fragments are joined into one chunk: each byte is copied at most twice.
    """

    __slots__ = ("_chunks", "_limit", "_pending", "_size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[Any] = []
        self._pending: list[Any] = []
        self._size = 0

    def add(self, event: TextMessage | BytesMessage) -> Message | None:
        """Take one fragment; return the complete message once its last fragment is in."""
        data = event.data
        size = self._size + len(data)
        limit = self._limit
        if limit and isinstance(data, str) and size <= limit < self._size + 4 * len(data):
            # Characters are up to 4 bytes in UTF-8: count exactly only when it matters.
            size = self._size + len(data.encode())
        if limit and size > limit:
            raise MessageTooBig(f"message larger than --ws-max-message-size ({limit} bytes)")
        empty: Any = "" if isinstance(data, str) else b""
        pending = self._pending
        if not event.message_finished:
            pending.append(data)
            if len(pending) >= _COALESCE:
                self._chunks.append(empty.join(pending))
                pending.clear()
            self._size = size
            return None
        if pending or self._chunks:
            pending.append(data)
            data = empty.join(self._chunks + pending)
            self._chunks = []
            pending.clear()
            self._size = 0
        if isinstance(data, str):
            return {"type": "websocket.receive", "bytes": None, "text": data}
        return {"type": "websocket.receive", "bytes": bytes(data), "text": None}


_COALESCE = 256


def outbound_payload(message: Message) -> tuple[int, bytes]:
    """Opcode (1 text, 2 binary) and payload of a ``websocket.send``: exactly one of ``text``
    and ``bytes`` (ASGI WebSocket spec)."""
    text = message.get("text")
    data = message.get("bytes")
    if (text is None) == (data is None):
        raise ASGIMessageError("websocket.send needs exactly one of 'text' (str) and 'bytes' (bytes)")
    if text is not None:
        if type(text) is not str:
            raise ASGIMessageError(f"'text' must be str, got {type(text).__name__}")
        return 0x1, text.encode()
    if type(data) is bytes:
        return 0x2, data
    if isinstance(data, (bytearray, memoryview)):
        return 0x2, bytes(data)
    raise ASGIMessageError(f"'bytes' must be bytes, got {type(data).__name__}")


def unmasked_frame(opcode: int, payload: bytes) -> bytes:
    """A server's whole message as one frame (RFC 6455 §5.2: FIN, opcode, length, payload).

    Used instead of wsproto's serializer when no extension is negotiated: that one copies
    the payload three times, which dominated the time to send large messages. Servers do not
    mask (§5.1), so the frame is the header and the payload, copied once.
    """
    length = len(payload)
    if length < 126:
        return _SHORT_HEADERS[opcode][length] + payload
    return frame_header(0x80 | opcode, length) + payload


# The two header bytes of every unmasked text (1) and binary (2) frame with a 7-bit length.
_SHORT_HEADERS = {opcode: [bytes((0x80 | opcode, length)) for length in range(126)] for opcode in (0x1, 0x2)}


def frame_header(first: int, length: int) -> bytes:
    """An unmasked frame header: ``first`` (FIN, RSV bits, opcode), then the length (§5.2)."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def accept_fields(message: Message) -> tuple[str | None, Headers]:
    """The chosen subprotocol and the app's extra headers from ``websocket.accept``."""
    subprotocol = message.get("subprotocol")
    if subprotocol is not None and not isinstance(subprotocol, str):
        raise ASGIMessageError(f"'subprotocol' must be a str or None, got {subprotocol!r}")
    extra = validate_headers(message.get("headers", ()))
    return subprotocol, [(name, value) for name, value in extra if name.lower() not in _HANDSHAKE_FIELDS]


def close_fields(message: Message) -> tuple[int, str]:
    """Code (default 1000) and reason of ``websocket.close``."""
    code = message.get("code", 1000)
    # RFC 6455 §7.4: 1004-1006 and 1015 are never sent; 1016-2999 are unassigned (IANA
    # registry: 1012-1014 were added later); 3000-4999 belong to libraries and apps.
    if type(code) is not int or not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise ASGIMessageError(f"'code' of websocket.close must be a valid close code, got {code!r}")
    reason = message.get("reason") or ""
    if not isinstance(reason, str):
        raise ASGIMessageError(f"'reason' of websocket.close must be a str, got {type(reason).__name__}")
    return code, reason
