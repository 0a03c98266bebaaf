"""Stream events -> HTTP/2 frames: response heads, bodies, trailers, ends, and error answers.

The app's Content-Length is held to (RFC 9113 §8.1.1): a longer body raises
``ResponseFramingError`` to the app, a shorter one resets the stream with INTERNAL_ERROR so
the client never takes it for complete. A response complete before its request ends the
stream with RST_STREAM NO_ERROR (§8.1).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.events import (
    Body,
    Data,
    EndBody,
    EndData,
    FileBody,
    Headers,
    InformationalResponse,
    OutboundEvent,
    Response,
    StreamAborted,
    Trailers,
    WholeResponse,
)
from gateway.protocols.common import Transport, http_date
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_connection import ServerConnection
from gateway.protocols.http2_data_sender import DataSender
from gateway.protocols.http2_frames import ErrorCode
from gateway.protocols.http2_headers import declared_length, response_headers, trailer_fields
from gateway.protocols.http2_stream_record import StreamGone
from gateway.protocols.http2_stream_table import StreamState, StreamTable
from gateway.protocols.http_rules import ResponseFramingError

log = logging.getLogger("gateway.error")


class ResponseWriter:
    """Writes the responses of one connection's streams."""

    __slots__ = ("_body_timeout", "_connection", "_flush_scheduled", "_loop", "_sender", "_table", "_transport")

    def __init__(
        self,
        connection: ServerConnection,
        transport: Transport,
        table: StreamTable,
        sender: DataSender,
        body_timeout: BodyTimeout,
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._table = table
        self._sender = sender
        self._body_timeout = body_timeout
        self._flush_scheduled = False
        # Looked up once: asyncio.get_running_loop() costs a getpid() call on CPython 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's event into frames for the client."""
        if isinstance(event, WholeResponse):
            await self._send_whole(event)
            return
        stream_id = event.stream_id
        table = self._table
        state = table.get(stream_id)
        if state is None or table.closing:
            return
        connection = self._connection
        try:
            if isinstance(event, (Body, Data)):
                if isinstance(event, Body):
                    self._count_body(stream_id, len(event.data))
                await self._send_data(stream_id, event.data)
                self._flush_soon()  # an EndBody in this loop turn sets END_STREAM on the last frame
                return
            if isinstance(event, FileBody):
                self._count_body(stream_id, event.count)
                await self._sender.send_file(event)
                return
            if isinstance(event, Response):
                self._send_head(state, stream_id, event.status, event.headers)
            elif isinstance(event, (EndBody, EndData)):
                self._end_response(stream_id)
            elif isinstance(event, Trailers):
                if self._body_complete(stream_id):
                    connection.send_headers(stream_id, trailer_fields(event.headers), end_stream=True)
                    self.response_done(stream_id)
            elif isinstance(event, InformationalResponse):
                connection.send_headers(stream_id, response_headers(event.status, event.headers, None))
                if event.status == 100:
                    self._body_timeout.restart(stream_id)  # the client may send its body now
            elif isinstance(event, StreamAborted):
                self.reset(stream_id, ErrorCode.INTERNAL_ERROR)
        except StreamGone:
            table.forget(stream_id)
        self._flush()

    async def _send_whole(self, event: WholeResponse) -> None:
        """HEADERS, the body as DATA (split as flow control allows) and END_STREAM.

        The same frames as ``Response``, ``Body`` and ``EndBody`` one after the other, for
        one await instead of three.
        """
        stream_id = event.stream_id
        table = self._table
        state = table.get(stream_id)
        if state is None or table.closing:
            return
        body = event.body
        try:
            self._send_head(state, stream_id, event.status, event.headers)
            if body:
                # A body past its length raises to the app, which resets the stream: the
                # client sees the head, then RST_STREAM (as for a Body event).
                self._count_body(stream_id, len(body))
                await self._send_data(stream_id, body)
                if stream_id not in table or table.closing:
                    return  # reset or gone while the body waited for the window
            self._end_response(stream_id)
        except StreamGone:
            table.forget(stream_id)
        self._flush()

    def _send_head(self, state: StreamState, stream_id: int, status: int, headers: Headers) -> None:
        if not state.head:
            state.body_left = declared_length(status, headers)
        self._connection.send_headers(stream_id, response_headers(status, headers, http_date()))

    async def _send_data(self, stream_id: int, data: bytes) -> None:
        if self._flush_scheduled:
            # The previous body's tail is still queued: at most one stays (back-pressure
            # needs the bytes in the transport, or a loop that never yields piles them up).
            self._write_queued()
        await self._sender.send(stream_id, data)

    def _end_response(self, stream_id: int) -> None:
        """END_STREAM, unless the body fell short of its Content-Length (then a reset)."""
        if self._body_complete(stream_id):
            self._connection.end_stream(stream_id)
            self.response_done(stream_id)

    def _count_body(self, stream_id: int, size: int) -> None:
        state = self._table.get(stream_id)
        if state is not None and state.body_left >= 0:
            state.body_left -= size
            if state.body_left < 0:
                # RFC 9113 §8.1.1: such a response is malformed; the app is told, as in HTTP/1.1.
                raise ResponseFramingError("response body longer than its Content-Length")

    def _body_complete(self, stream_id: int) -> bool:
        """False (and the stream reset) when the body fell short of its Content-Length."""
        state = self._table.get(stream_id)
        if state is None or state.body_left <= 0:
            return True
        log.error("response body shorter than its Content-Length (%d bytes missing)", state.body_left)
        self.reset(stream_id, ErrorCode.INTERNAL_ERROR)
        return False

    def reset(self, stream_id: int, code: ErrorCode) -> None:
        """Drop the stream and send RST_STREAM ``code``."""
        self._table.drop(stream_id)
        self._connection.reset_stream(stream_id, code)
        self._table.done()

    def response_done(self, stream_id: int) -> None:
        table = self._table
        state = table.drop(stream_id)
        if state is None:
            return
        if not state.remote_done:
            # RFC 9113 §8.1: a complete response before the whole request; NO_ERROR asks
            # the client to stop sending the rest.
            self._connection.reset_stream(stream_id, ErrorCode.NO_ERROR)
        table.done()

    def answer_error(self, stream_id: int, status: int, reason: str) -> None:
        """Answer one stream with a plain-text error; the connection goes on."""
        table = self._table
        state = table.drop(stream_id)
        if state is not None:
            state.stream.cancel()
        connection = self._connection
        body = f"{status} {reason}\n".encode()
        if connection.local_flow_control_window(stream_id) < len(body):
            body = b""  # no window for the text: the status alone, never a waiting task
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        connection.send_headers(stream_id, response_headers(status, headers, http_date()), end_stream=not body)
        if body:
            connection.send_data(stream_id, body, end_stream=True)
        if connection.is_open(stream_id):
            # RFC 9113 §8.1: the answer is complete; the rest of the request is not wanted.
            connection.reset_stream(stream_id, ErrorCode.NO_ERROR)
        table.done()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_queued()

    def _write_queued(self) -> None:
        output = self._connection.data_to_send()
        if output:
            self._transport.write(output)
