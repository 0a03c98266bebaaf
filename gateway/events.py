"""Stream events: the one vocabulary between the protocol layer and the stream layer.

A protocol adapter (HTTP/1.1 or HTTP/2) turns bytes into these events and hands them to a
stream; a stream hands events back to the adapter, which turns them into bytes. HTTP/1.1
always uses stream id 1; HTTP/2 uses its own stream ids. Events carry data, never behaviour.

Events are values: nobody changes one after making it. They are not ``frozen`` dataclasses
all the same, because a frozen dataclass sets each field through ``object.__setattr__``:
measured, a ``Request`` cost 0.95 µs to make frozen and 0.21 µs plain, and every request
makes several events. ``ConnectionInfo`` is made once per connection and stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # a type-only import: events.py stays a leaf at run time
    from gateway.asgi import ASGIApp
    from gateway.proxy_headers import TrustedProxies

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What every stream of one connection shares: addresses and TLS details."""

    client: tuple[str, int] | None
    server: tuple[str, int] | None
    tls: bool
    # The ASGI ``tls`` extension dict when TLS is in use (RFC-free, ASGI TLS extension).
    tls_extension: dict[str, object] | None = None
    # Set when --proxy-headers is on and the peer is a trusted proxy: the scope then takes
    # client, scheme and host from its Forwarded / X-Forwarded-* headers.
    proxies: TrustedProxies | None = None
    # The gateway's own responder that serves this connection instead of the application:
    # the --redirect-http listener, plain HTTP sent to a TLS port (gateway/https_redirect.py).
    listener_app: ASGIApp | None = None


@dataclass(slots=True)
class Request:
    """A complete request head. ``target`` is the raw request target (path and query)."""

    stream_id: int
    method: bytes
    target: bytes
    http_version: str
    headers: Headers
    # Set by HTTP/2 from ``:scheme``; ``None`` means "the connection's own scheme".
    scheme: str | None = None
    # Set by HTTP/2 from ``:protocol`` on an extended CONNECT (RFC 8441 §4), e.g. "websocket".
    protocol: str | None = None
    # The client sent ``Expect: 100-continue`` (RFC 9110 §10.1.1): the adapter read the
    # fields already, so the stream does not scan them again.
    expect_continue: bool = False


@dataclass(slots=True)
class Body:
    """A piece of a message body, request or response."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class FileBody:
    """``count`` bytes of an open file from ``offset``, as (part of) a response body.

    Sent by a stream for static files and ``http.response.pathsend``; the stream owns the
    file and closes it once ``stream_send`` returns. Plain HTTP/1.1 sends it with the
    kernel's ``sendfile``; TLS and HTTP/2 read it in chunks, within backpressure and flow
    control. A file that ends before ``count`` bytes raises ``OSError`` from ``stream_send``.
    """

    stream_id: int
    file: BinaryIO
    offset: int
    count: int


@dataclass(slots=True)
class EndBody:
    """The end of a message body."""

    stream_id: int


@dataclass(slots=True)
class Trailers:
    """Trailer fields sent after the body (RFC 9110 §6.5); ends the message."""

    stream_id: int
    headers: Headers


@dataclass(slots=True)
class Data:
    """Bytes of an upgraded stream (WebSocket frames), in either direction."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class EndData:
    """The end of an upgraded stream's bytes."""

    stream_id: int


@dataclass(slots=True)
class Response:
    """A final response head (status >= 200)."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(slots=True)
class WholeResponse:
    """A final response head, its whole body and its end, in one event.

    What most apps send (``http.response.start``, then one ``http.response.body`` without
    ``more_body``) costs one event, one await and one write instead of three of each. The
    same response as ``Response``, ``Body`` (when ``body`` is not empty) and ``EndBody``.
    """

    stream_id: int
    status: int
    headers: Headers
    body: bytes


@dataclass(slots=True)
class InformationalResponse:
    """An interim response: 100 Continue or 103 Early Hints (RFC 9110 §15.2)."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(slots=True)
class StreamClosed:
    """The stream ended from the protocol side: client gone, reset, or connection closed."""

    stream_id: int


@dataclass(slots=True)
class InputClosed:
    """The client will send nothing more on this stream (a TCP half-close after the request).

    The app's ``receive()`` reports ``http.disconnect`` (a client that closes usually means
    to leave, and a long-poll app must learn it), but the response may still be written: a
    client that only shut down its sending side still gets it (RFC 9112 §9.6).
    """

    stream_id: int


@dataclass(slots=True)
class StreamAborted:
    """Sent by a stream when its response cannot be completed (the app failed mid-way).

    HTTP/1.1 closes the connection so the client sees a truncated body; HTTP/2 resets the
    stream with INTERNAL_ERROR.
    """

    stream_id: int


InboundEvent = Request | Body | EndBody | Data | EndData | StreamClosed | InputClosed
OutboundEvent = (
    Response
    | WholeResponse
    | InformationalResponse
    | Body
    | FileBody
    | EndBody
    | Trailers
    | Data
    | EndData
    | StreamAborted
)
