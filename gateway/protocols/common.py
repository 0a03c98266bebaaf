"""Small pieces both HTTP protocol adapters share: the Date header and error responses."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

REASON_PHRASES: dict[int, bytes] = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

_date_second = -1
_date_value = b""


def http_date() -> bytes:
    """The current time as an IMF-fixdate (RFC 9110 §5.6.7), recomputed once a second."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_value = formatdate(now, usegmt=True).encode("ascii")
    return _date_value


def error_response(status: int, reason: str, *, http_version: bytes = b"1.1") -> bytes:
    """A complete plain-text error response that also closes the connection."""
    body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
    return b"".join(
        (
            b"HTTP/%s %d %s\r\n" % (http_version, status, REASON_PHRASES.get(status, b"")),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"date: " + http_date() + b"\r\n\r\n",
            body,
        )
    )


class Transport(Protocol):
    """What a protocol adapter may ask of its connection; it never sees the socket."""

    write_paused: bool

    def write(self, data: bytes) -> None:
        """Queue bytes; they are written at the end of this event-loop turn at the latest."""

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was written."""

    def close(self) -> None:
        """Flush what is queued, then close."""

    def pause_reading(self) -> None:
        """Stop reading from the peer (idempotent)."""

    def resume_reading(self) -> None:
        """Read from the peer again (idempotent)."""

    def set_timeout(self, seconds: float, reason: str) -> None:
        """Close the connection ``seconds`` from now unless reset or cleared."""

    def clear_timeout(self) -> None:
        """Cancel the pending timeout."""
