"""Read flow on an HTTP/1.1 connection: request-body backpressure and the pipelining pause.

The parser delimits the body (Content-Length or chunked, RFC 9112 §6); :class:`ReadFlow`
decides how fast the connection reads. Reading pauses while the app has more than
``--read-buffer-size`` bytes it has not taken and resumes as it reads (``consumed``, also
the credit path after a WebSocket upgrade), so memory stays bounded; it also pauses while a
pipelined request waits for the response before it (RFC 9112 §9.3.2). The body timeout
(nginx's ``client_body_timeout``) is armed only while the client is the one to move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.protocols.common import Transport

# Bytes of a request body that the app left unread and that we read and drop so the
# connection can be kept alive; past this, closing is cheaper than reading on.
MAX_DISCARD = 1024 * 1024


class ReadFlow:
    """Pauses and resumes reading for one connection; owns both reasons to pause."""

    __slots__ = ("_body_timeout", "_limit", "_transport", "buffered", "paused_for_body", "paused_for_pipeline")

    def __init__(self, transport: Transport, read_buffer_size: int, body_timeout: float) -> None:
        self._transport = transport
        self._limit = read_buffer_size
        self._body_timeout = body_timeout
        # Bytes handed to the stream that its app has not taken yet.
        self.buffered = 0
        self.paused_for_body = False
        self.paused_for_pipeline = False

    def wait_for_body(self) -> None:
        """Arm the body timeout: a client may not stall mid-body for ever."""
        self._transport.set_timeout(self._body_timeout, "request body stalled")

    def check_buffered(self) -> None:
        """After bytes went to the stream (``buffered`` counted first, since the stream may
        hand credit back at once): pause reading while the app is too far behind."""
        if self.buffered > self._limit and not self.paused_for_body:
            self.paused_for_body = True
            self._transport.pause_reading()
            # Not the client's fault while we hold it back.
            self._transport.clear_timeout()

    def consumed(self, size: int, body_pending: bool) -> None:
        """The app took ``size`` bytes; read again once it has caught up (half the buffer)."""
        self.buffered -= size
        if self.paused_for_body and self.buffered <= self._limit // 2:
            self.paused_for_body = False
            if not self.paused_for_pipeline:
                self._transport.resume_reading()
            if body_pending:
                self.wait_for_body()

    def pause_for_pipeline(self) -> None:
        """A pipelined request waits until the current response is complete."""
        if not self.paused_for_pipeline:
            self.paused_for_pipeline = True
            self._transport.pause_reading()

    def end_pipeline_pause(self) -> None:
        """Reading resumes for what follows (the next request, or WebSocket frames)."""
        if self.paused_for_pipeline:
            self.paused_for_pipeline = False
            if not self.paused_for_body:
                self._transport.resume_reading()

    def reset(self) -> None:
        """The exchange is over: both pauses end, including one for a body nobody read."""
        self.buffered = 0
        if self.paused_for_pipeline or self.paused_for_body:
            self.paused_for_pipeline = self.paused_for_body = False
            self._transport.resume_reading()
