"""The response filter: a :class:`StreamSender` between a stream and its protocol adapter.

It sees a response as stream events (``Response``, ``Body``, ``FileBody``, ``EndBody``,
``Trailers``, ``StreamAborted``, or all at once as ``WholeResponse``) and changes them on the way out: the fields of
``--hsts``/``--header`` (:mod:`gateway.response_headers`) and ``--compress``
(:mod:`gateway.compression`). Every event is awaited in order, so backpressure and HTTP/2
flow control work as for an unfiltered response. Nothing configured: the stream keeps its
adapter's sender and pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.events import (
    Body,
    EndBody,
    FileBody,
    OutboundEvent,
    Request,
    Response,
    StreamAborted,
    Trailers,
    WholeResponse,
)

if TYPE_CHECKING:
    from gateway.compression import Compression, Encoder
    from gateway.context import ServerContext
    from gateway.response_headers import ResponseHeaders
    from gateway.streams.http import StreamSender

# Input bytes compressed per step: a large body message or file goes out in pieces, each
# awaited, so memory stays bounded and the event loop serves others in between.
COMPRESS_STEP = 64 * 1024


def filtered_sender(
    context: ServerContext, sender: StreamSender, *, secure: bool, request: Request | None
) -> StreamSender:
    """``sender`` itself when nothing is configured, else a :class:`ResponseFilter` over it.

    ``secure``: the request came over TLS (HSTS goes out). ``request`` None keeps bodies
    as they are (WebSocket handshakes: their messages have permessage-deflate).
    """
    compression = context.compression if request is not None else None
    if context.response_headers is None and compression is None:
        return sender
    accept_encoding = None
    if compression is not None and request is not None:
        for name, value in request.headers:
            if name == b"accept-encoding":  # repeated fields form one list (RFC 9110 §5.3)
                accept_encoding = value if accept_encoding is None else accept_encoding + b", " + value
    head_request = request is not None and request.method == b"HEAD"
    return ResponseFilter(sender, context.response_headers, compression, secure, accept_encoding, head_request)


class ResponseFilter:
    """Adds the configured fields to the response head and compresses the body if chosen."""

    __slots__ = ("_accept_encoding", "_compression", "_encoder", "_extra", "_head_request", "_inner", "_secure")

    def __init__(
        self,
        inner: StreamSender,
        extra: ResponseHeaders | None,
        compression: Compression | None,
        secure: bool,
        accept_encoding: bytes | None,
        head_request: bool,
    ) -> None:
        self._inner = inner
        self._extra = extra
        self._compression = compression
        self._secure = secure
        self._accept_encoding = accept_encoding
        # HEAD: the fields say what a GET would get (RFC 9110 §9.3.2), no body is encoded.
        self._head_request = head_request
        self._encoder: Encoder | None = None

    async def stream_send(self, event: OutboundEvent) -> None:
        """Filter ``event`` and pass it (or what it became) to the adapter."""
        if isinstance(event, WholeResponse):
            await self._send_whole(event)
            return
        if isinstance(event, Response):
            event = self._filter_head(event)
        elif self._encoder is not None:
            if isinstance(event, Body):
                await self._send_compressed(event.stream_id, event.data)
                return
            if isinstance(event, FileBody):
                await self._send_file(event)
                return
            if isinstance(event, (EndBody, Trailers)):
                await self._finish(event.stream_id)
            elif isinstance(event, StreamAborted):
                self._encoder = None
        await self._inner.stream_send(event)

    def body_consumed(self, stream_id: int, size: int) -> None:
        """Passed through: request bodies are not filtered."""
        self._inner.body_consumed(stream_id, size)

    async def _send_whole(self, event: WholeResponse) -> None:
        head = self._filter_head(Response(event.stream_id, event.status, event.headers))
        if self._encoder is None:
            await self._inner.stream_send(WholeResponse(head.stream_id, head.status, head.headers, event.body))
            return
        # Compressed: the same steps as a response sent in pieces.
        await self._inner.stream_send(head)
        await self._send_compressed(event.stream_id, event.body)
        await self._finish(event.stream_id)
        await self._inner.stream_send(EndBody(event.stream_id))

    def _filter_head(self, response: Response) -> Response:
        headers = response.headers
        if self._extra is not None:
            headers = self._extra.add_to(headers, secure=self._secure)
        compression = self._compression
        if compression is not None:
            headers, coding = compression.select(response.status, headers, self._accept_encoding)
            if coding is not None and not self._head_request:
                self._encoder = compression.encoder(coding)
        if headers is response.headers:
            return response
        return Response(response.stream_id, response.status, headers)

    async def _send_compressed(self, stream_id: int, data: bytes) -> None:
        """One body message: compressed in steps, flushed at its end (one piece per message)."""
        encoder = self._encoder
        assert encoder is not None
        size = len(data)
        for start in range(0, size, COMPRESS_STEP):
            output = encoder.compress(data[start : start + COMPRESS_STEP])
            if start + COMPRESS_STEP >= size:
                output += encoder.flush()
            if output:
                await self._inner.stream_send(Body(stream_id, output))

    async def _send_file(self, event: FileBody) -> None:
        """A file (static or pathsend) read and compressed in steps instead of sendfile."""
        encoder = self._encoder
        assert encoder is not None
        file = event.file
        file.seek(event.offset)
        remaining = event.count
        while remaining > 0:
            chunk = file.read(min(COMPRESS_STEP, remaining))
            if not chunk:
                raise OSError(f"file ended {remaining} bytes before the promised {event.count}")
            remaining -= len(chunk)
            output = encoder.compress(chunk)
            if remaining == 0:
                output += encoder.flush()
            if output:
                await self._inner.stream_send(Body(event.stream_id, output))

    async def _finish(self, stream_id: int) -> None:
        encoder, self._encoder = self._encoder, None
        assert encoder is not None
        output = encoder.finish()
        if output:
            await self._inner.stream_send(Body(stream_id, output))
