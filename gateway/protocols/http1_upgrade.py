"""The two ways an HTTP/1.1 connection stops carrying HTTP/1.1: ``Upgrade: h2c`` and WebSocket.

Both start as an ordinary request with an ``Upgrade`` header (RFC 9110 §7.8). On a plain
connection ``Upgrade: h2c`` is answered here with 101 and the connection is handed to
HTTP/2, the request becoming its stream 1 (RFC 7540 §3.2). A WebSocket handshake goes to a
``WebSocketStream``; once its app has accepted and the 101 is out, bytes bypass h11 in both
directions as ``Data`` events, read no faster than the stream takes them (the same
backpressure as a request body's, from ``http1_body.py``).
:class:`HTTP1Upgrades` is the half of ``HTTP1Protocol`` that does this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.events import Data, Headers
from gateway.protocols.http1_body import STREAM_ID, HTTP1RequestBody
from gateway.protocols.http1_response import Framing, ResponseWriter, serialize_head
from gateway.protocols.http2_headers import h2c_upgrade

if TYPE_CHECKING:
    import h11


class HTTP1Upgrades(HTTP1RequestBody):
    """The upgrade half of :class:`HTTP1Protocol`, which creates the state declared here.

    It builds on the request-body half: the tunnel uses the same read backpressure.
    """

    _upgraded: bool
    _writer: ResponseWriter

    def _detach(self) -> None:
        raise NotImplementedError

    def _switch_to_http2(self, event: h11.Request, headers: Headers) -> bool:
        """``Upgrade: h2c`` (RFC 7540 §3.2): answer 101 and hand the connection to HTTP/2."""
        upgrade = h2c_upgrade(event.method, event.target, headers)
        if upgrade is None:
            return False
        self._transport.write(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n")
        leftover = self._h11.trailing_data[0]
        self._detach()  # this adapter is done; the transport stays open
        self._transport.upgrade_to_http2(upgrade[0], upgrade[1], leftover)
        return True

    def _feed_upgraded(self, data: bytes) -> None:
        assert self._stream is not None
        self._buffered += len(data)
        # The stream usually hands the credit back at once (body_consumed): check after it.
        self._stream.handle(Data(STREAM_ID, data))
        if self._buffered > self._config.read_buffer_size and not self._paused_for_body:
            self._paused_for_body = True
            self._transport.pause_reading()

    def _switch_protocols(self, headers: Headers) -> None:
        """Send the app's 101: from now on the connection carries WebSocket frames."""
        head = serialize_head(101, headers, body_allowed=False, http10=False, keep_alive=True)[0]
        self._transport.write(head)
        self._upgraded = True
        self._writer.framing = Framing.NONE
        leftover = self._h11.trailing_data[0]
        if self._paused_for_pipeline:
            # h11 paused at the upgrade request; reading resumes for the frames.
            self._paused_for_pipeline = False
            if not self._paused_for_body:
                self._transport.resume_reading()
        if leftover:
            self._feed_upgraded(leftover)
