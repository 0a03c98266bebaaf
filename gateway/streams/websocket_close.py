"""How a WebSocket ends: its phases, the close handshake, and failing the connection.

RFC 6455 §7: either side starts the close handshake with a close frame and the other
answers with one; then the server closes the TCP connection (§7.1.1). A peer that does not
answer our close within ``ws_close_timeout``, or stops answering pings, has the connection
dropped; a frame that cannot be parsed fails it at once (§7.1.7). The app hears the first
cause as ``websocket.disconnect`` with its close code (1006 when no close frame came,
§7.1.5). :class:`WebSocketClosing` is the half of ``WebSocketStream`` that does this.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING

from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping

from gateway.logs import address_label, escape

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.events import ConnectionInfo
    from gateway.streams.websocket_inbox import Inbox
    from gateway.streams.websocket_keepalive import KeepAlive
    from gateway.streams.websocket_writer import FrameWriter

log = logging.getLogger("gateway.error")

# RFC 6455 §7.4.1 close codes used here.
NORMAL_CLOSURE, GOING_AWAY, ABNORMAL_CLOSURE, MESSAGE_TOO_BIG, INTERNAL_ERROR = 1000, 1001, 1006, 1009, 1011


class Phase(enum.Enum):
    """Where the WebSocket is; the ASGI WebSocket spec fixes which messages fit where."""

    HANDSHAKE = "waiting for websocket.accept"
    HTTP_RESPONSE = "sending websocket.http.response.body"
    OPEN = "open"
    CLOSING = "close sent, waiting for the peer's close"
    CLOSED = "closed"


class WebSocketClosing:
    """The closing half of :class:`WebSocketStream`, which creates the state declared here."""

    # The slots this half assigns; WebSocketStream lists the rest.
    __slots__ = ("_close_timer", "_keepalive", "_phase")

    _config: Config
    _info: ConnectionInfo
    _frames: FrameConnection | None
    _phase: Phase
    _inbox: Inbox
    _writer: FrameWriter
    _keepalive: KeepAlive | None
    _close_timer: asyncio.TimerHandle | None
    stream_id: int
    task: asyncio.Task[None] | None

    def _on_close_frame(self, event: CloseConnection) -> None:
        frames = self._frames
        assert frames is not None
        if frames.state is ConnectionState.OPEN:
            # wsproto reports a frame it could not parse as a close event without changing
            # state: fail the connection with that code (RFC 6455 §7.1.7).
            self._log_client("WebSocket protocol error: %s (close %d)", event.reason, event.code)
            self._fail(int(event.code), event.reason or "")
            return
        if frames.state is ConnectionState.REMOTE_CLOSING:
            # RFC 6455 §5.5.1: answer with a close frame, then the server closes TCP (§7.1.1).
            self._writer.write_soon(frames.send(CloseConnection(code=event.code)), end=True)
        else:
            self._end()  # the answer to our close: the handshake is complete
        self._set_closed(int(event.code), event.reason or "")

    def _peer_ended(self) -> None:
        # TCP FIN (HTTP/1.1) or END_STREAM (HTTP/2): the peer sends nothing more. Without a
        # close frame first that is an abnormal closure; end our side too.
        if self._frames is not None:
            self._end()
        self._set_closed(ABNORMAL_CLOSURE, "")

    def _transport_closed(self) -> None:
        # RFC 6455 §7.1.5: closed without a close frame means code 1006.
        self._writer.ended = True
        self._set_closed(ABNORMAL_CLOSURE, "")

    def _set_closed(self, code: int, reason: str) -> None:
        # The first cause wins: a close handshake followed by the transport closing keeps
        # the peer's code.
        self._phase = Phase.CLOSED
        self._stop_timers()
        self._inbox.close(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame and drop the connection at once (RFC 6455 §7.1.7)."""
        frames = self._frames
        if frames is not None and frames.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._writer.write_soon(frames.send(CloseConnection(code=code, reason=reason[:120] or None)), end=True)
        else:
            self._end()
        self._set_closed(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        """Start the close handshake (once: the app's close and a shutdown's may cross)."""
        frames = self._frames
        if self._phase is not Phase.OPEN or frames is None or frames.state is not ConnectionState.OPEN:
            return
        self._phase = Phase.CLOSING
        data = frames.send(CloseConnection(code=code, reason=reason or None))
        self._close_timer = asyncio.get_running_loop().call_later(self._config.ws_close_timeout, self._close_timeout)
        if self._keepalive is not None:
            self._keepalive.stop()
        await self._writer.write(data)

    def _close_timeout(self) -> None:
        self._close_timer = None
        self._log_client("no close frame from the WebSocket peer within %gs", self._config.ws_close_timeout)
        self._end()
        self._set_closed(ABNORMAL_CLOSURE, "")

    def _end(self) -> None:
        self._stop_timers()
        self._writer.end()

    # -- timers, shutdown ---------------------------------------------------------------

    def send_ping(self, payload: bytes) -> None:
        """Called by :class:`KeepAlive`: send a ping if the WebSocket is still open."""
        frames = self._frames
        if frames is not None and frames.state is ConnectionState.OPEN and not self._writer.ended:
            self._writer.write_soon(frames.send(Ping(payload=payload)))

    def peer_unresponsive(self) -> bool:
        """Called by :class:`KeepAlive` when no pong came: True if the peer was given up.

        A peer we stopped reading from (the app is behind) may have answered; it is kept.
        """
        if self._inbox.withheld:
            return False
        self._log_client("WebSocket peer sent no pong within %gs; closing", self._config.ws_ping_timeout)
        # RFC 6455 §7.1.5: no close frame came from the peer, so for the app it is 1006.
        self._inbox.close(ABNORMAL_CLOSURE, "")
        self._fail(INTERNAL_ERROR, "keepalive ping timeout")
        return True

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1001 (going away) and wait for the peer's close."""
        if self._phase is not Phase.OPEN or self._frames is None:
            return
        self._writer.spawn(self._close(GOING_AWAY, "server shutting down"))

    def cancel(self) -> None:
        """Stop the app task (graceful timeout passed, or the stream was reset)."""
        self._transport_closed()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _stop_timers(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
            self._keepalive = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def _log_client(self, text: str, *args: object) -> None:
        # Reasons and close texts may come from the client: escaped like every logged field.
        shown = [escape(arg) if isinstance(arg, str) else arg for arg in args]
        log.info("%s - " + text + " (stream %d)", address_label(self._info.client), *shown, self.stream_id)
