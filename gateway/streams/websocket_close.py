"""How an accepted WebSocket ends: the close handshake, failing the connection, timers.

RFC 6455 §7: either side starts the close handshake with a close frame and the other
answers with one; then the server closes the TCP connection (§7.1.1). A peer that does not
answer our close within ``ws_close_timeout``, or stops answering pings, has the connection
dropped; a frame that cannot be parsed fails it (§7.1.7). The app hears the first cause as
``websocket.disconnect`` with its close code (1006 when no close frame came, §7.1.5).

When the peer's close frame or a protocol error arrives while the app still holds messages
that came before it (queued, or received and not yet answered), the app's replies go out
first and our close frame after them: §5.5.1 lets an endpoint send data after receiving a
close and before sending its own, and §7.1.7 only discards what follows the error. That wait
ends when the app asks for the next message (it gets ``websocket.disconnect``), closes,
returns or fails, or after ``ws_close_timeout``.

:class:`WebSocketClosing` owns this state. ``WebSocketStream`` creates one when the app
accepts and calls it; it never calls back into the stream.
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
from gateway.streams.websocket_keepalive import KeepAlive

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.events import ConnectionInfo
    from gateway.streams.websocket_inbox import Inbox
    from gateway.streams.websocket_writer import FrameWriter

log = logging.getLogger("gateway.error")

# RFC 6455 §7.4.1 close codes used here.
NORMAL_CLOSURE, GOING_AWAY, ABNORMAL_CLOSURE, MESSAGE_TOO_BIG, INTERNAL_ERROR = 1000, 1001, 1006, 1009, 1011


class CloseState(enum.Enum):
    """Where an accepted WebSocket is on its way to closed."""

    OPEN = "open"
    REPLYING = "peer closed, sending the app's last replies before the close frame"
    CLOSING = "close sent, waiting for the peer's close"
    CLOSED = "closed"


def log_client(info: ConnectionInfo, stream_id: int, text: str, *args: object) -> None:
    """One ``info`` line about client behaviour, with the peer address and stream id."""
    # Reasons and close texts may come from the client: escaped like every logged field.
    shown = [escape(arg) if isinstance(arg, str) else arg for arg in args]
    log.info("%s - " + text + " (stream %d)", address_label(info.client), *shown, stream_id)


class WebSocketClosing:
    """The close state of one accepted WebSocket, its close timer and its keep-alive."""

    __slots__ = (
        "_close_timer",
        "_config",
        "_frames",
        "_inbox",
        "_info",
        "_keepalive",
        "_reply_close",
        "_stream_id",
        "_writer",
        "state",
    )

    def __init__(
        self,
        config: Config,
        info: ConnectionInfo,
        stream_id: int,
        frames: FrameConnection,
        inbox: Inbox,
        writer: FrameWriter,
    ) -> None:
        self._config = config
        self._info = info
        self._stream_id = stream_id
        self._frames = frames
        self._inbox = inbox
        self._writer = writer
        self.state = CloseState.OPEN
        self._close_timer: asyncio.TimerHandle | None = None
        # The close frame that waits for the app's last replies (REPLYING only).
        self._reply_close: CloseConnection | None = None
        self._keepalive: KeepAlive | None = None

    def keep_alive(self) -> None:
        """Start pinging the peer (``--ws-ping-interval``), once the accept has gone out."""
        config = self._config
        if config.ws_ping_interval and self.state is CloseState.OPEN:
            self._keepalive = KeepAlive(config.ws_ping_interval, config.ws_ping_timeout, self)

    @property
    def app_may_send(self) -> bool:
        """True while ``websocket.send`` from the app still goes out."""
        return self.state is CloseState.OPEN or self.state is CloseState.REPLYING

    @property
    def reading(self) -> bool:
        """True while inbound frames are parsed (after our close, to find the peer's)."""
        return self.state is CloseState.OPEN or self.state is CloseState.CLOSING

    # -- what the peer did ----------------------------------------------------------------

    def close_frame_received(self, event: CloseConnection) -> None:
        """wsproto reported a close: the peer's close frame, or a frame it could not parse."""
        state = self._frames.state
        if state is ConnectionState.OPEN:
            # wsproto reports an unparsable frame as a close event without changing state:
            # fail the connection with that code (RFC 6455 §7.1.7).
            log_client(self._info, self._stream_id, "WebSocket protocol error: %s (close %d)", event.reason, event.code)
            self.protocol_error(int(event.code), event.reason or "")
        elif state is ConnectionState.REMOTE_CLOSING:
            # RFC 6455 §5.5.1: answer with a close frame echoing the code; the server then
            # closes TCP (§7.1.1).
            self._answer_after_replies(CloseConnection(code=event.code), int(event.code), event.reason or "")
        else:
            self._end()  # the answer to our close: the handshake is complete
            self._set_closed(int(event.code), event.reason or "")

    def protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or a message was too big): close with ``code``."""
        self._answer_after_replies(CloseConnection(code=code, reason=reason[:120] or None), code, reason)

    def peer_ended(self) -> None:
        """TCP FIN (HTTP/1.1) or END_STREAM (HTTP/2): the peer sends nothing more."""
        if self.state is CloseState.REPLYING:
            return  # it closed first, as it may; its replies and our close still go out
        # Without a close frame first this is an abnormal closure; end our side too.
        self._end()
        self._set_closed(ABNORMAL_CLOSURE, "")

    def transport_closed(self) -> None:
        """The connection or stream is gone: RFC 6455 §7.1.5, no close frame means 1006."""
        self._writer.ended = True
        self._set_closed(ABNORMAL_CLOSURE, "")

    def pong_received(self) -> None:
        """Any pong proves the peer is there."""
        if self._keepalive is not None:
            self._keepalive.pong_received()

    # -- what the app (or the server) did -------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Start the close handshake (once: the app's close and a shutdown's may cross).

        While the app's last replies are going out, its close (or its return) ends that wait
        with the close frame already chosen for the peer.
        """
        if self.state is CloseState.REPLYING:
            self.replies_done()
            return
        if self.state is not CloseState.OPEN or self._frames.state is not ConnectionState.OPEN:
            return
        self.state = CloseState.CLOSING
        data = self._frames.send(CloseConnection(code=code, reason=reason or None))
        self._stop_timers()
        self._close_timer = asyncio.get_running_loop().call_later(self._config.ws_close_timeout, self._close_timeout)
        await self._writer.write(data)

    def replies_done(self) -> None:
        """The app asked for the next message (so answered the earlier ones), or ended."""
        close = self._reply_close
        if self.state is not CloseState.REPLYING or close is None:
            return
        self._reply_close = None
        self._writer.write_soon(self._frames.send(close), end=True)
        self._set_closed(int(close.code), "")  # the inbox already holds the peer's code and reason

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1001 (going away) and wait for the peer's close."""
        if self.state is CloseState.OPEN:
            self._writer.spawn(self.close(GOING_AWAY, "server shutting down"))

    # -- KeepAlive's target -------------------------------------------------------------------

    def send_ping(self, payload: bytes) -> None:
        """Called by :class:`KeepAlive`: send a ping if the WebSocket is still open."""
        if self.state is CloseState.OPEN and not self._writer.ended:
            self._writer.write_soon(self._frames.send(Ping(payload=payload)))

    def peer_unresponsive(self) -> bool:
        """Called by :class:`KeepAlive` when no pong came: True if the peer was given up.

        A peer we stopped reading from (the app is behind) may have answered; it is kept.
        """
        if self._inbox.withheld:
            return False
        log_client(
            self._info, self._stream_id, "WebSocket peer sent no pong within %gs; closing", self._config.ws_ping_timeout
        )
        # RFC 6455 §7.1.5: no close frame came from the peer, so for the app it is 1006.
        self._inbox.close(ABNORMAL_CLOSURE, "")
        self._send_close_and_end(CloseConnection(code=INTERNAL_ERROR, reason="keepalive ping timeout"))
        self._set_closed(ABNORMAL_CLOSURE, "")
        return True

    # -- inside -----------------------------------------------------------------------------

    def _answer_after_replies(self, close: CloseConnection, code: int, reason: str) -> None:
        if self.state is not CloseState.OPEN or not self._inbox.app_may_reply:
            self._send_close_and_end(close)
            self._set_closed(code, reason)
            return
        # The app still holds messages from before this close: let it answer them first.
        self.state = CloseState.REPLYING
        self._reply_close = close
        self._inbox.close(code, reason)  # delivered after the messages already queued
        self._stop_timers()
        self._close_timer = asyncio.get_running_loop().call_later(self._config.ws_close_timeout, self._replies_timeout)

    def _send_close_and_end(self, close: CloseConnection) -> None:
        """Send a close frame (if the state allows one) and finish the bytes after it."""
        if self._frames.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._writer.write_soon(self._frames.send(close), end=True)
        else:
            self._end()

    def _replies_timeout(self) -> None:
        self._close_timer = None
        log_client(
            self._info,
            self._stream_id,
            "the app did not finish answering a closed WebSocket within %gs",
            self._config.ws_close_timeout,
        )
        self.replies_done()

    def _close_timeout(self) -> None:
        self._close_timer = None
        log_client(
            self._info,
            self._stream_id,
            "no close frame from the WebSocket peer within %gs",
            self._config.ws_close_timeout,
        )
        self._end()
        self._set_closed(ABNORMAL_CLOSURE, "")

    def _set_closed(self, code: int, reason: str) -> None:
        # The first cause wins: a close handshake followed by the transport closing keeps
        # the peer's code.
        self.state = CloseState.CLOSED
        self._reply_close = None
        self._stop_timers()
        self._inbox.close(code, reason)

    def _end(self) -> None:
        self._stop_timers()
        self._writer.end()

    def _stop_timers(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
            self._keepalive = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
