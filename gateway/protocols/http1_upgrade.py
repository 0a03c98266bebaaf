"""The two ways an HTTP/1.1 connection stops carrying HTTP/1.1: ``Upgrade: h2c`` and WebSocket.

Both start as an ordinary request with an ``Upgrade`` header (RFC 9110 §7.8). On a plain
connection ``Upgrade: h2c`` is answered with 101 and the connection is handed to HTTP/2,
the request becoming its stream 1 (RFC 7540 §3.2). A WebSocket handshake goes to a
``WebSocketStream``; once its app has accepted and the 101 is out, a :class:`Tunnel` carries
bytes past the parser in both directions as ``Data`` events, read no faster than the
stream takes them (the same :class:`ReadFlow` as a request body's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.events import Data, EndData, Request
from gateway.protocols.http1_body import ReadFlow
from gateway.protocols.http1_parser import STREAM_ID
from gateway.protocols.http2_headers import h2c_upgrade

if TYPE_CHECKING:
    from gateway.protocols.common import Stream, Transport

SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


def switch_to_http2(transport: Transport, head: Request, leftover: bytes) -> bool:
    """``Upgrade: h2c`` (RFC 7540 §3.2): answer 101 and hand the connection to HTTP/2.

    False when the upgrade is not taken (the request is then served as HTTP/1.1).
    """
    upgrade = h2c_upgrade(head.method, head.target, head.headers)
    if upgrade is None:
        return False
    transport.write(SWITCHING_TO_H2C)
    transport.upgrade_to_http2(upgrade[0], upgrade[1], leftover)
    return True


class Tunnel:
    """Bytes after a 101 to a WebSocket upgrade: no parser, only read backpressure."""

    __slots__ = ("_flow", "_stream")

    def __init__(self, stream: Stream, flow: ReadFlow) -> None:
        self._stream = stream
        self._flow = flow

    def feed(self, data: bytes) -> None:
        """Frames from the client, to the stream."""
        self._flow.buffered += len(data)
        self._stream.handle(Data(STREAM_ID, data))
        self._flow.check_buffered()

    def feed_eof(self) -> None:
        """The client will send no more frames."""
        self._stream.handle(EndData(STREAM_ID))
