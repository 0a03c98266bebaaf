"""HTTP/1.1 response serialization (RFC 9112 §4, §6, §7).

h11 parses requests; responses are written here. h11's send path validates every response
header twice (once in ``Response()``, once after adding framing headers) and runs its state
machine for each body piece: measured, that was about a third of the whole per-request cost.
The rules it enforced are kept, in cheaper form: field names must be tokens and values must
not contain CR, LF, NUL or other control characters (no response splitting), the framing is
chosen as RFC 9112 §6.3 requires, and a body never exceeds its Content-Length.
"""

from __future__ import annotations

import enum

from gateway.events import Headers
from gateway.protocols.common import REASON_PHRASES, http_date
from gateway.protocols.http_rules import TOKEN_BYTES, ResponseFramingError, check_fields

__all__ = ["Framing", "ResponseFramingError", "ResponseWriter", "check_fields", "serialize_head"]


class Framing(enum.Enum):
    """How the end of the response body is marked."""

    NONE = "no body (HEAD, 204, 304)"
    LENGTH = "Content-Length"
    CHUNKED = "chunked"
    CLOSE = "closing the connection (HTTP/1.0)"


def field_lines(headers: Headers) -> list[bytes]:
    """``name: value CRLF`` for each field (names as the app gave them)."""
    return [b"%s: %s\r\n" % (name, value) for name, value in headers]


def serialize_head(
    status: int,
    headers: Headers,
    *,
    body_allowed: bool,
    http10: bool,
    keep_alive: bool,
) -> tuple[bytes, Framing, int, bool]:
    """The response head bytes, the framing, the declared length, and whether to keep alive.

    RFC 9112 §6.3: a response with a body and no Content-Length is chunked for HTTP/1.1
    clients and delimited by closing the connection for HTTP/1.0 clients.
    """
    length = -1
    has_date = chunked = False
    status_line = _STATUS_LINES.get(status)
    if status_line is None:
        status_line = b"HTTP/1.1 %d %s\r\n" % (status, REASON_PHRASES.get(status, b""))
    lines = [status_line]
    append = lines.append
    for name, value in headers:
        kind = _NAME_KINDS.get(name)
        if kind is None:
            kind = _name_kind(name, value)
        if kind:
            if kind is _CONTENT_LENGTH:
                if not value.isdigit() or (length >= 0 and int(value) != length):
                    raise ResponseFramingError(f"invalid Content-Length {value!r}")
                length = int(value)
            elif kind is _TRANSFER_ENCODING:
                if value.lower() != b"chunked" or http10:
                    raise ResponseFramingError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
                continue  # written below, once
            elif kind is _DATE:
                has_date = True
            elif b"close" in value.lower():  # Connection
                keep_alive = False
        append(b"%s: %s\r\n" % (name, value))
    if not has_date:
        append(b"date: %s\r\n" % http_date())
    if not body_allowed:
        framing = Framing.NONE
    elif length >= 0 and not chunked:
        framing = Framing.LENGTH
    elif http10:
        framing = Framing.CLOSE
        keep_alive = False
    else:
        framing = Framing.CHUNKED
        append(b"transfer-encoding: chunked\r\n")
        if length >= 0:
            # RFC 9112 §6.3 (3): with chunked, a Content-Length must not be sent.
            lines = [line for line in lines if not line.lower().startswith(b"content-length:")]
    if not keep_alive and not http10:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # No response splitting: every line ends in the one CRLF we put there, so a CR or LF in
    # a value shows as one too many; other control characters become NUL in one translate.
    # (Names were checked to be tokens above.) On the rare failure, check_fields names the field.
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines) or b"\0" in head.translate(_CONTROLS):
        check_fields(headers)
        raise ResponseFramingError("invalid response header")
    return head, framing, length, keep_alive


# What a field name means for framing (RFC 9112 §6, §9.6) or the Date the server adds when
# the app did not (RFC 9110 §6.6.1); 0 for every other name.
_ORDINARY, _CONTENT_LENGTH, _TRANSFER_ENCODING, _DATE, _CONNECTION = range(5)
_FRAMING_FIELDS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"date": _DATE,
    b"connection": _CONNECTION,
}
# Names already checked to be tokens, as the app spells them, with their kind. Apps send a
# handful of names, so nearly every field costs one lookup; bounded, since a misbehaving
# app could invent names without end.
_NAME_KINDS: dict[bytes, int] = {}
_NAMES_REMEMBERED = 1024
# Control characters other than HTAB, CR and LF (RFC 9110 §5.5) to NUL; all else unchanged.
_CONTROLS = bytes(
    0 if (byte < 0x20 and byte not in (0x09, 0x0A, 0x0D)) or byte == 0x7F else byte for byte in range(256)
)
_STATUS_LINES = {status: b"HTTP/1.1 %d %s\r\n" % (status, phrase) for status, phrase in REASON_PHRASES.items()}


def _name_kind(name: bytes, value: bytes) -> int:
    """A field name seen for the first time: check it is a token (RFC 9110 §5.1), remember it."""
    if not name or name.translate(None, TOKEN_BYTES):
        raise ResponseFramingError(f"invalid response header {name!r}: {value!r}")
    kind = _FRAMING_FIELDS.get(name.lower(), _ORDINARY)
    if len(_NAME_KINDS) < _NAMES_REMEMBERED:
        _NAME_KINDS[name] = kind
    return kind


class ResponseWriter:
    """Frames one response at a time on a connection.

    The head is held until the first body bytes, which the ASGI spec requires ("must not
    start sending the response ... until it has received at least one Response Body
    event") and which lets head and body leave in one write.
    """

    __slots__ = ("_held_head", "_remaining", "framing")

    def __init__(self) -> None:
        self.framing = Framing.NONE
        self._remaining = 0
        self._held_head = b""

    def start(self, status: int, headers: Headers, *, body_allowed: bool, http10: bool, keep_alive: bool) -> bool:
        """Prepare the head; return whether the connection may stay open after it."""
        head, self.framing, self._remaining, keep_alive = serialize_head(
            status, headers, body_allowed=body_allowed, http10=http10, keep_alive=keep_alive
        )
        self._held_head = head
        return keep_alive

    def whole(
        self, status: int, headers: Headers, body: bytes, *, body_allowed: bool, http10: bool, keep_alive: bool
    ) -> tuple[bytes, bool]:
        """A whole response at once: its bytes, and whether the connection may stay open.

        A body shorter than its Content-Length goes out as it is and ``missing`` says by how
        much (the adapter then closes); a longer one raises, as with :meth:`body`.
        """
        head, framing, length, keep_alive = serialize_head(
            status, headers, body_allowed=body_allowed, http10=http10, keep_alive=keep_alive
        )
        self.framing = framing
        self._held_head = b""
        self._remaining = 0
        if framing is Framing.LENGTH:
            if len(body) > length:
                raise ResponseFramingError("response body longer than its Content-Length")
            self._remaining = length - len(body)
            return head + body, keep_alive
        if framing is Framing.CHUNKED:
            return head + (chunk(body) if body else b"") + last_chunk(), keep_alive
        if framing is Framing.CLOSE:
            return head + body, keep_alive
        return head, keep_alive

    def body(self, data: bytes) -> bytes:
        """Bytes to write for a piece of body (with the held head in front, the first time)."""
        framing = self.framing
        if framing is Framing.CHUNKED:
            data = chunk(data)
        elif framing is Framing.LENGTH:
            self._remaining -= len(data)
            if self._remaining < 0:
                raise ResponseFramingError("response body longer than its Content-Length")
        elif framing is Framing.NONE:
            data = b""
        if self._held_head:
            data = self._held_head + data
            self._held_head = b""
        return data

    def file_body(self, count: int) -> tuple[bytes, bytes, bool]:
        """Framing around ``count`` body bytes sent straight from a file.

        ``(before, after, send)``: bytes to write before and after the file's bytes, and
        whether the file's bytes are sent at all (not for HEAD, 204 or 304).
        """
        framing = self.framing
        before, self._held_head = self._held_head, b""
        if framing is Framing.NONE or count == 0:
            return before, b"", False
        if framing is Framing.CHUNKED:
            return before + b"%x\r\n" % count, b"\r\n", True
        if framing is Framing.LENGTH:
            self._remaining -= count
            if self._remaining < 0:
                raise ResponseFramingError("response body longer than its Content-Length")
        return before, b"", True

    def end(self, trailers: Headers | None) -> bytes | None:
        """Bytes that finish the response, or None when it fell short of its Content-Length."""
        head, self._held_head = self._held_head, b""
        if self.framing is Framing.CHUNKED:
            return head + last_chunk(trailers)
        if self.framing is Framing.LENGTH and self._remaining > 0:
            return None
        return head

    @property
    def length_reached(self) -> bool:
        """True once a Content-Length body has all its bytes (nothing more may follow)."""
        return self.framing is Framing.LENGTH and self._remaining == 0

    @property
    def missing(self) -> int:
        """Bytes still owed to the declared Content-Length."""
        return self._remaining


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: Headers | None = None) -> bytes:
    """The last chunk, with trailer fields if any (RFC 9112 §7.1.2)."""
    if not trailers:
        return b"0\r\n\r\n"
    check_fields(trailers)
    return b"0\r\n" + b"".join(field_lines(trailers)) + b"\r\n"


def interim_response(status: int, headers: Headers) -> bytes:
    """A 1xx response head (100 Continue, 103 Early Hints)."""
    check_fields(headers)
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, REASON_PHRASES.get(status, b""), b"".join(field_lines(headers)))
