"""HTTP/2 header blocks <-> stream events (RFC 9113 §8.2, §8.3).

h2's own inbound validation and normalisation are turned off in the adapter: measured, they
were a large share of h2's per-request cost, and they turn every malformed request into a
connection error, where RFC 9113 §8.1.1 asks for a stream error. The same rules are checked
here in one pass, and a malformed request resets only its own stream.
"""

from __future__ import annotations

import base64
import binascii

from gateway.events import Headers, Request
from gateway.protocols.http_rules import ResponseFramingError, check_fields, expects_continue

# RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
# RFC 9113 §8.2.1: field names are lowercase tokens. ``translate`` deletes the allowed bytes.
_LOWER_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
# RFC 9110 §9.1: a method is a token (case-sensitive).
_TOKEN = _LOWER_TOKEN + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 9110 §5.5: VCHAR, SP, HTAB and obs-text; NUL, CR and LF above all (RFC 9113 §8.2.1).
_FIELD_VALUE = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
_WHITESPACE = b" \t"
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority", b":protocol"))


class MalformedRequest(Exception):
    """The header block breaks RFC 9113 §8: the stream is reset with PROTOCOL_ERROR."""


class BadRequest(Exception):
    """A well-formed block HTTP semantics reject (RFC 9110): answered with a 400."""


def _check_field(name: bytes, value: bytes) -> None:
    if not name or name.translate(None, _LOWER_TOKEN):
        raise MalformedRequest(f"invalid field name {name!r}")
    if value.translate(None, _FIELD_VALUE) or (value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE)):
        raise MalformedRequest(f"invalid value for field {name.decode('latin-1')!r}")
    if name in CONNECTION_SPECIFIC:
        raise MalformedRequest(f"connection-specific field {name.decode('latin-1')!r}")
    if name == b"te" and value != b"trailers":
        raise MalformedRequest("TE other than 'trailers'")


def request_from_headers(stream_id: int, headers: list[tuple[bytes, bytes]], *, connect_protocol: bool) -> Request:
    """Check a request header block and turn it into a :class:`Request` event.

    ``:authority`` becomes a ``host`` field when there is none (RFC 9113 §8.3.1); cookies
    sent as several fields are joined with "; " for HTTP/1.1-style apps (§8.2.3).
    """
    pseudo: dict[bytes, bytes] = {}
    fields: Headers = []
    cookies: list[bytes] = []
    host: bytes | None = None
    expect_continue = False
    for name, value in headers:
        if name[:1] == b":":
            # §8.3: only the defined pseudo-headers, each once, all before regular fields.
            if fields or cookies or name not in _REQUEST_PSEUDO or name in pseudo:
                raise MalformedRequest(f"misplaced, unknown or repeated pseudo-header {name!r}")
            pseudo[name] = value
            continue
        _check_field(name, value)
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None and host != value:
                raise BadRequest("two different Host fields")
            host = value
        elif name == b"expect":
            expect_continue = expects_continue(value)
        fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    method = pseudo.get(b":method")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    if method is None:
        raise MalformedRequest("missing :method")
    if not method or method.translate(None, _TOKEN):
        raise MalformedRequest(f"invalid :method {method!r}")
    if protocol is not None and (not connect_protocol or method != b"CONNECT"):
        raise MalformedRequest(":protocol outside an extended CONNECT (RFC 8441 §4)")
    if method == b"CONNECT" and protocol is None:
        # §8.5: a plain CONNECT carries only :method and :authority.
        if authority is None or b":scheme" in pseudo or b":path" in pseudo:
            raise MalformedRequest("CONNECT needs :authority and no :scheme or :path")
        raise BadRequest("CONNECT is not supported")
    path = pseudo.get(b":path")
    scheme = pseudo.get(b":scheme")
    if not path or scheme is None:
        raise MalformedRequest("missing or empty :path or :scheme")
    if authority is not None:
        if host is None:
            fields.append((b"host", authority))
        elif host != authority:
            raise BadRequest(":authority and Host differ")
    return Request(
        stream_id,
        method,
        path,
        "2",
        fields,
        scheme=scheme.decode("latin-1"),
        protocol=protocol.decode("latin-1") if protocol is not None else None,
        expect_continue=expect_continue,
    )


def check_trailers(headers: list[tuple[bytes, bytes]]) -> None:
    """Request trailers: regular fields only (RFC 9113 §8.1)."""
    for name, value in headers:
        if name[:1] == b":":
            raise MalformedRequest("pseudo-header in trailers")
        _check_field(name, value)


def response_headers(status: int, headers: Headers, date: bytes | None) -> list[tuple[bytes, bytes]]:
    """The app's response (or interim) fields as an HTTP/2 header block.

    Names are lowercased (RFC 9113 §8.2.1) and connection-specific fields dropped (§8.2.2)
    rather than failing the response: apps written for HTTP/1.1 send them.
    """
    check_fields(headers)
    block = [(b":status", b"%d" % status)]
    has_date = date is None
    for name, value in headers:
        name = name.lower()
        if name in CONNECTION_SPECIFIC:
            continue
        if name == b"date":
            has_date = True
        block.append((name, value))
    if date is not None and not has_date:
        block.append((b"date", date))
    return block


def declared_length(status: int, headers: Headers) -> int:
    """The body length a response's Content-Length promises; -1 when there is none.

    204 and 304 responses carry no body whatever they declare (RFC 9110 §8.6).
    """
    if status in (204, 304):
        return -1
    for name, value in headers:
        if name.lower() == b"content-length":
            if not value.isdigit():
                raise ResponseFramingError(f"invalid Content-Length {value!r}")
            return int(value)
    return -1


def trailer_fields(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Response trailers: lowercased, no pseudo-headers or connection-specific fields."""
    check_fields(headers)
    block = []
    for name, value in headers:
        name = name.lower()
        if name in CONNECTION_SPECIFIC:
            continue
        block.append((name, value))
    return block


def _valid_settings_payload(value: bytes) -> bool:
    """``HTTP2-Settings`` is a base64url SETTINGS payload: whole 6-byte entries (RFC 7540 §3.2.1)."""
    try:
        payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(payload) % 6 == 0


def h2c_upgrade(method: bytes, target: bytes, headers: Headers) -> tuple[Request, bytes] | None:
    """The HTTP/2 stream-1 request and ``HTTP2-Settings`` value of an ``Upgrade: h2c``.

    RFC 7540 §3.2: the server may ignore the upgrade; it is taken only for a request
    without a body (a body would have to be read in full first) carrying exactly one
    ``HTTP2-Settings`` field. ``None`` means "serve it as HTTP/1.1".
    """
    upgrade = settings = None
    fields: Headers = []
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value
        elif name == b"http2-settings":
            if settings is not None:
                return None
            settings = value
        elif name in (b"content-length", b"transfer-encoding"):
            if value != b"0":
                return None
            fields.append((name, value))
        elif name not in CONNECTION_SPECIFIC and name != b"te":
            fields.append((name, value))
    if settings is None or upgrade is None or not _valid_settings_payload(settings):
        return None
    if b"h2c" not in (token.strip().lower() for token in upgrade.split(b",")):
        return None
    return Request(1, method, target, "2", fields, scheme="http"), settings


__all__ = [
    "BadRequest",
    "MalformedRequest",
    "ResponseFramingError",
    "check_trailers",
    "declared_length",
    "h2c_upgrade",
    "request_from_headers",
    "response_headers",
    "trailer_fields",
]
