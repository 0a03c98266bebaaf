"""Request bodies on HTTP/1.1: the size limit, read backpressure, and what the app leaves unread.

h11 delimits the body (Content-Length or chunked, RFC 9112 §6); this half of
``HTTP1Protocol`` decides how fast it is read. A chunked body past ``--max-body-size`` ends
the request (413, or a close once the response has started). Reading pauses while the app
has more than ``--read-buffer-size`` bytes it has not taken and resumes as it reads
(``body_consumed``, also the credit path after a WebSocket upgrade), so memory stays
bounded. A body left unread after the response is read and dropped, up to a limit, so the
connection can be kept alive; a client stalling mid-body meets the body timeout.
:class:`HTTP1RequestBody` is that half.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11

from gateway.events import Body, EndBody, StreamClosed

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.protocols.common import Transport
    from gateway.streams.http import HTTPStream
    from gateway.streams.websocket import WebSocketStream

# The stream id of every HTTP/1.1 request (HTTP/2 numbers its own).
STREAM_ID = 1
# Bytes of a request body that the app left unread and that we read and drop so the
# connection can be kept alive; past this, closing is cheaper than reading on.
_MAX_DISCARD = 1024 * 1024


class HTTP1RequestBody:
    """The request-body half of :class:`HTTP1Protocol`, which creates the state declared here."""

    _config: Config
    _transport: Transport
    _h11: h11.Connection
    _stream: HTTPStream | WebSocketStream | None
    _body_size: int
    _buffered: int
    _discarding: int
    _paused_for_body: bool
    _paused_for_pipeline: bool

    def _close(self) -> None:
        raise NotImplementedError

    def _reject(self, status: int, reason: str) -> None:
        raise NotImplementedError

    def _next_cycle(self) -> None:
        raise NotImplementedError

    def _wait_for_body(self) -> None:
        # nginx's client_body_timeout: a client may not stall mid-body for ever. Not armed
        # while reading is paused for a slow app, or while the client waits for a 100.
        self._transport.set_timeout(self._config.body_timeout, "request body stalled")

    def _on_data(self, data: bytes) -> None:
        self._wait_for_body()
        stream = self._stream
        if stream is None or stream.response_complete:
            self._discarding += len(data)
            if self._discarding > _MAX_DISCARD:
                self._close()
            return
        self._body_size += len(data)
        max_body = self._config.max_body_size
        if max_body and self._body_size > max_body:
            # A chunked body outgrew the limit; the app already runs and gets a disconnect.
            stream.handle(StreamClosed(STREAM_ID))
            if stream.response_started:
                self._close()
            else:
                self._reject(413, "request body larger than --max-body-size")
            return
        self._buffered += len(data)
        stream.handle(Body(STREAM_ID, data))
        if self._buffered > self._config.read_buffer_size and not self._paused_for_body:
            self._paused_for_body = True
            self._transport.pause_reading()
            self._transport.clear_timeout()

    def _on_end_of_request(self) -> None:
        self._transport.clear_timeout()
        stream = self._stream
        if stream is not None and not stream.response_complete:
            stream.handle(EndBody(STREAM_ID))
        else:
            # The response went out before the body was read to its end (discarded).
            self._next_cycle()

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has read ``size`` bytes: read from the client again if we had paused."""
        self._buffered -= size
        if self._paused_for_body and self._buffered <= self._config.read_buffer_size // 2:
            self._paused_for_body = False
            if not self._paused_for_pipeline:
                self._transport.resume_reading()
            if self._h11.their_state is h11.SEND_BODY:
                self._wait_for_body()
