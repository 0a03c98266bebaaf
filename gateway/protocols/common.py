"""Small pieces both HTTP protocol adapters share: the Date header and error responses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from http import HTTPStatus
from typing import BinaryIO, Protocol

from gateway.events import InboundEvent, OutboundEvent, Request
from gateway.protocols.http_rules import error_body

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
    body = error_body(status, reason)
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


class FileShrank(OSError):
    """A file sent as a response body ended before the bytes its Content-Length promised."""


def read_file_chunks(file: BinaryIO, offset: int, count: int, chunk_size: int) -> Iterator[bytes]:
    """``count`` bytes of ``file`` from ``offset``, at most ``chunk_size`` at a time.

    Only one chunk is held at a time, so a large file never sits in memory. Reads are
    synchronous, as nginx's are without ``aio``: static files are usually in the page cache.
    """
    file.seek(offset)
    remaining = count
    while remaining > 0:
        chunk = file.read(min(chunk_size, remaining))
        if not chunk:
            raise FileShrank(f"file ended {remaining} bytes before the promised {count}")
        remaining -= len(chunk)
        yield chunk


class Transport(Protocol):
    """What a protocol adapter may ask of its connection; it never sees the socket."""

    write_paused: bool

    def write(self, data: bytes, *, flush: bool = False) -> None:
        """Queue bytes; written at once if ``flush``, else by the end of this loop turn."""

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was written."""

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> None:
        """After what is queued, send ``count`` bytes of ``file`` from ``offset`` as they are.

        Plain connections use the kernel's ``sendfile``; TLS ones read and write chunks. A
        failed socket aborts the connection (the stream then sees ``StreamClosed``); a
        failed read raises ``OSError``.
        """

    def close(self) -> None:
        """Flush what is queued, then close."""

    def abort(self) -> None:
        """Drop the connection at once, queued bytes included (the peer is not reading)."""

    def pause_reading(self) -> None:
        """Stop reading from the peer (idempotent)."""

    def resume_reading(self) -> None:
        """Read from the peer again (idempotent)."""

    def set_timeout(self, seconds: float, reason: str) -> None:
        """Close the connection ``seconds`` from now unless reset or cleared."""

    def clear_timeout(self) -> None:
        """Cancel the pending timeout."""

    def upgrade_to_http2(self, request: Request, settings: bytes, leftover: bytes) -> None:
        """Switch this connection to HTTP/2 after ``101 Switching Protocols`` (RFC 7540 §3.2).

        ``request`` becomes stream 1, ``settings`` is the decoded-later ``HTTP2-Settings``
        value and ``leftover`` the bytes already received after the request head.
        """


class Stream(Protocol):
    """What a protocol adapter may ask of a stream (HTTP or WebSocket), whatever its class.

    Adapters hold streams through this protocol only; which class serves a request is
    decided once, when the request head arrives.
    """

    @property
    def response_started(self) -> bool:
        """True once the response head (or the WebSocket accept) has been sent."""

    @property
    def response_complete(self) -> bool:
        """True once the response (or the WebSocket) is finished."""

    def handle(self, event: InboundEvent) -> None:
        """Take one inbound event."""

    def input_ended(self) -> bool:
        """The client half-closed after its request; True when the response may still be sent."""

    def shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight (a WebSocket closes with 1001)."""

    def cancel(self) -> None:
        """Stop the app task (graceful timeout passed, or the stream was reset)."""


class ProtocolAdapter(Protocol):
    """What the connection asks of a protocol adapter (HTTP/1.1 or HTTP/2)."""

    @property
    def idle(self) -> bool:
        """True when nothing is in flight that a graceful shutdown would cut off."""

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""

    def feed_eof(self) -> bool:
        """The client half-closed; True keeps our side open to finish a response."""

    def timeout(self, reason: str) -> None:
        """The connection's timer fired while ``reason`` held."""

    def shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight, accept nothing new."""

    def connection_lost(self) -> None:
        """The socket is gone."""

    def cancel_streams(self) -> None:
        """Cancel app tasks still running."""

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's outbound event into bytes."""

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has taken ``size`` bytes of request body on ``stream_id``."""
