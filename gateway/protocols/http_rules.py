"""HTTP rules both protocol adapters follow (RFC 9110), kept apart so neither imports the other.

HTTP/1.1 (``http1*.py``) and HTTP/2 (``http2*.py``) frame messages differently but agree on
fields, statuses and errors: which bytes a field may hold, which responses have no body,
when a client waits for ``100 Continue`` and what a plain-text error says.
"""

from __future__ import annotations

from http import HTTPStatus

from gateway.events import Headers

# RFC 9110 §5.6.2 token characters, and §5.5 field-value characters (VCHAR, SP, HTAB,
# obs-text). ``bytes.translate(None, allowed)`` deletes the allowed ones: what remains is bad.
TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FIELD_VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])

# RFC 9110 §6.4.1: 1xx, 204 and 304 responses never have content (nor does any answer to HEAD).
NO_BODY_STATUSES = frozenset((*range(100, 200), 204, 304))


class ResponseFramingError(RuntimeError):
    """The app's response cannot be framed as it asked (bad header, body past its length)."""


def check_fields(headers: Headers) -> None:
    """Reject field names that are not tokens and values with control characters (no splitting)."""
    for name, value in headers:
        if not name or name.translate(None, TOKEN_BYTES) or value.translate(None, FIELD_VALUE_BYTES):
            raise ResponseFramingError(f"invalid response header {name!r}: {value!r}")


def body_allowed(method: bytes, status: int) -> bool:
    """Whether a response to ``method`` with ``status`` carries content (RFC 9110 §6.4.1, §9.3.2)."""
    return method != b"HEAD" and status not in NO_BODY_STATUSES


def expects_continue(value: bytes) -> bool:
    """An ``Expect`` value asking for ``100 Continue`` before the body (RFC 9110 §10.1.1)."""
    return value.lower() == b"100-continue"


def error_body(status: int, reason: str) -> bytes:
    """The one plain-text body of every error asgigw answers by itself."""
    return f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
