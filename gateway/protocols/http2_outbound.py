"""The sending half of the HTTP/2 adapter: stream events out, flow control (RFC 9113 §6.9).

Response DATA goes out within the peer's connection and stream windows and its
SETTINGS_MAX_FRAME_SIZE; a stream whose window stays shut, or a peer that stops reading,
is dropped after ``h2_send_timeout``. Request-body window is handed back only as the app
reads (``body_consumed``), so each stream buffers at most its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import h2.connection
import h2.exceptions
from h2.errors import ErrorCodes

from gateway.events import (
    Body,
    ConnectionInfo,
    Data,
    EndBody,
    EndData,
    FileBody,
    InformationalResponse,
    OutboundEvent,
    Response,
    StreamAborted,
    StreamClosed,
    Trailers,
)
from gateway.logs import address_label, escape
from gateway.protocols.common import Transport, http_date, read_file_chunks
from gateway.protocols.http1_response import ResponseFramingError
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_headers import declared_length, response_headers, trailer_fields
from gateway.protocols.http2_limits import FloodGuard

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.streams.http import HTTPStream
    from gateway.streams.websocket import WebSocketStream

log = logging.getLogger("gateway.error")


class StreamState:
    """What the adapter tracks for one open stream."""

    __slots__ = ("body_left", "head", "received", "remote_done", "stream", "unread", "waiter")

    def __init__(self, stream: HTTPStream | WebSocketStream, *, head: bool = False) -> None:
        self.stream = stream
        self.received = 0
        # Request bytes handed to the stream that its app has not read yet (§6.9 window).
        self.unread = 0
        self.remote_done = False
        self.waiter: asyncio.Future[None] | None = None
        self.head = head
        # Response bytes still owed by the app's Content-Length; -1 when it declared none.
        self.body_left = -1

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HTTP2Sender:
    """Stream events -> frames; shared state comes from :class:`HTTP2Protocol`."""

    _config: Config
    _transport: Transport
    _h2: h2.connection.H2Connection
    _streams: dict[int, StreamState]
    _flood: FloodGuard
    _body_timeout: BodyTimeout
    _closing: bool
    _info: ConnectionInfo

    def _forget(self, stream_id: int) -> None:
        raise NotImplementedError

    def _stream_done(self) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _fatal_quiet(self, *, abort: bool = False) -> None:
        raise NotImplementedError

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's event into frames for the client."""
        stream_id = event.stream_id
        if self._closing or stream_id not in self._streams:
            return
        h2_connection = self._h2
        event_type = type(event)
        try:
            if event_type is Body or event_type is Data:
                if event_type is Body:
                    self._count_body(stream_id, len(event.data))  # type: ignore[union-attr]
                await self._send_data(stream_id, event.data)  # type: ignore[union-attr]
                return
            if event_type is FileBody:
                await self._send_file(event)  # type: ignore[arg-type]
                return
            if event_type is Response:
                block = response_headers(event.status, event.headers, http_date())  # type: ignore[union-attr]
                state = self._streams[stream_id]
                if not state.head:
                    state.body_left = declared_length(event.status, event.headers)  # type: ignore[union-attr]
                h2_connection.send_headers(stream_id, block)
            elif event_type is EndBody or event_type is EndData:
                if self._body_complete(stream_id):
                    h2_connection.end_stream(stream_id)
                    self._response_done(stream_id)
            elif event_type is Trailers:
                if self._body_complete(stream_id):
                    h2_connection.send_headers(stream_id, trailer_fields(event.headers), end_stream=True)  # type: ignore[union-attr]
                    self._response_done(stream_id)
            elif event_type is InformationalResponse:
                block = response_headers(event.status, event.headers, None)  # type: ignore[union-attr]
                h2_connection.send_headers(stream_id, block)
                if event.status == 100:  # type: ignore[union-attr]
                    self._body_timeout.restart(stream_id)  # the client may send its body now
            elif event_type is StreamAborted:
                self._drop(stream_id)
                h2_connection.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                self._stream_done()
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            self._forget(stream_id)
        self._flush()

    async def _send_file(self, event: FileBody) -> None:
        """A file as DATA frames: one chunk read at a time, each sent within the windows."""
        stream_id = event.stream_id
        self._count_body(stream_id, event.count)
        for chunk in read_file_chunks(event.file, event.offset, event.count, self._config.write_buffer_size):
            if self._closing or stream_id not in self._streams:
                return  # reset or gone: stop reading the file
            await self._send_data(stream_id, chunk)

    def _count_body(self, stream_id: int, size: int) -> None:
        state = self._streams[stream_id]
        if state.body_left >= 0:
            state.body_left -= size
            if state.body_left < 0:
                # RFC 9113 §8.1.1: such a response is malformed; the app is told, as in HTTP/1.1.
                raise ResponseFramingError("response body longer than its Content-Length")

    def _body_complete(self, stream_id: int) -> bool:
        """False (and the stream reset) when the body fell short of its Content-Length."""
        state = self._streams[stream_id]
        if state.body_left <= 0:
            return True
        log.error("response body shorter than its Content-Length (%d bytes missing)", state.body_left)
        self._drop(stream_id)
        self._h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
        self._stream_done()
        return False

    async def _send_data(self, stream_id: int, data: bytes) -> None:
        """Send ``data`` as DATA frames within the peer's windows (RFC 9113 §6.9)."""
        h2_connection = self._h2
        transport = self._transport
        batch_limit = self._config.write_buffer_size
        # A memoryview, so that slicing a large body into frames copies each byte once.
        view = memoryview(data) if len(data) > h2_connection.max_outbound_frame_size else data
        offset, end = 0, len(data)
        while offset < end:
            state = self._streams.get(stream_id)
            if state is None or self._closing:
                return
            window = h2_connection.local_flow_control_window(stream_id)
            if window <= 0:
                await self._wait_for_window(state, stream_id)
                continue
            size = min(window, end - offset, batch_limit)
            frame_size = h2_connection.max_outbound_frame_size
            chunk = view[offset : offset + size]
            offset += size
            if size <= frame_size:
                h2_connection.send_data(stream_id, chunk)
                self._flood.data_sent(1)
                transport.write(h2_connection.data_to_send())
            else:
                self._send_frames(stream_id, chunk, frame_size)
            if transport.write_paused:
                await self._drain(stream_id)

    def _send_frames(self, stream_id: int, chunk: bytes | memoryview, frame_size: int) -> None:
        """``chunk`` (within the windows) as DATA frames of at most ``frame_size`` bytes.

        h2 costs a state-machine pass and a frame object per DATA frame: measured, that was
        most of the server's CPU on a large download. So h2 is asked for one frame holding the
        whole chunk (its frame-size limit lifted for that call), which does its flow-control
        and stream-state bookkeeping once; the frame it serialised is dropped and the same
        bytes are sent cut at the peer's SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2). About a
        fifth less server CPU on a 10 MB download (benchmarks/h2load.py, docs/benchmarks.md).
        """
        h2_connection = self._h2
        transport = self._transport
        transport.write(h2_connection.data_to_send())  # whatever h2 queued goes first
        h2_connection.max_outbound_frame_size = len(chunk)
        try:
            h2_connection.send_data(stream_id, chunk)
        finally:
            h2_connection.max_outbound_frame_size = frame_size
        h2_connection.data_to_send()  # the one oversized frame, replaced below
        tail = stream_id.to_bytes(6, "big")  # type 0 (DATA), no flags, 4-byte stream id
        parts: list[bytes | memoryview] = []
        for start in range(0, len(chunk), frame_size):
            piece = chunk[start : start + frame_size]
            parts.append(len(piece).to_bytes(3, "big") + tail)
            parts.append(piece)
        self._flood.data_sent(len(parts) // 2)
        transport.write(b"".join(parts))

    async def _wait_for_window(self, state: StreamState, stream_id: int) -> None:
        # The peer's window is shut: wait for a WINDOW_UPDATE, but not forever (§6.9).
        state.waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(state.waiter, self._config.h2_send_timeout)
        except TimeoutError:
            self._log_client_problem(stream_id, "flow-control window stayed closed; stream reset")
            state.stream.handle(StreamClosed(stream_id))
            self._drop(stream_id)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            self._flush()
            self._stream_done()
        finally:
            state.waiter = None

    async def _drain(self, stream_id: int) -> None:
        try:
            await asyncio.wait_for(self._transport.drain(), self._config.h2_send_timeout)
        except TimeoutError:
            # The peer does not read its socket at all: no stream can make progress.
            self._log_client_problem(stream_id, "peer stopped reading; connection dropped")
            self._fatal_quiet(abort=True)

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has read ``size`` bytes: let the peer send that much more (§6.9)."""
        state = self._streams.get(stream_id)
        if state is not None and not self._closing:
            state.unread -= size
            connection_window_shut = self._h2.inbound_flow_control_window <= 0
            self._acknowledge(size, stream_id)
            self._flush()
            # The client's clock for --body-timeout starts when the app has taken what came,
            # not at each DATA frame: until then a silent client is waiting for us, and this
            # way DATA frames cost no clock read (an empty one never restarts it).
            body_timeout = self._body_timeout
            body_timeout.restart(stream_id)
            if connection_window_shut and self._h2.inbound_flow_control_window > 0:
                body_timeout.restart_all()

    def _drop(self, stream_id: int) -> StreamState | None:
        """Forget a stream. Bytes its app never read go back to the connection window, or
        every reset upload would shrink it for good."""
        state = self._streams.pop(stream_id, None)
        if state is not None and not state.remote_done:
            self._body_timeout.forget(stream_id)  # gone mid-body
        if state is not None and state.unread > 0 and not self._closing:
            self._acknowledge(state.unread, stream_id)
            state.unread = 0
        return state

    def _acknowledge(self, size: int, stream_id: int) -> None:
        if size:
            # h2 batches these: a WINDOW_UPDATE goes out once half a window is consumed.
            self._h2.acknowledge_received_data(size, stream_id)

    def _response_done(self, stream_id: int) -> None:
        state = self._drop(stream_id)
        if state is None:
            return
        if not state.remote_done:
            # RFC 9113 §8.1: a complete response before the whole request; NO_ERROR asks
            # the client to stop sending the rest.
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self._stream_done()

    def _answer_error(self, stream_id: int, status: int, reason: str) -> None:
        """Answer one stream with a plain-text error; the connection goes on."""
        self._log_client_problem(stream_id, f"rejected request: {status} {reason}")
        state = self._drop(stream_id)
        if state is not None:
            state.stream.cancel()
        h2_connection = self._h2
        body = f"{status} {reason}\n".encode()
        if h2_connection.local_flow_control_window(stream_id) < len(body):
            body = b""  # no window for the text: the status alone, never a waiting task
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        h2_connection.send_headers(stream_id, response_headers(status, headers, http_date()), end_stream=not body)
        if body:
            h2_connection.send_data(stream_id, body, end_stream=True)
        h2_stream = h2_connection.streams.get(stream_id)
        if h2_stream is not None and h2_stream.open:
            # RFC 9113 §8.1: the answer is complete; the rest of the request is not wanted.
            h2_connection.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self._stream_done()

    def _log_client_problem(self, stream_id: int, problem: str) -> None:
        log.info(
            "%s - HTTP/2 stream %d: %s",
            address_label(self._info.client),
            stream_id,
            escape(problem),
        )
