"""An accepted WebSocket's inbound frames: the fast path for simple ones, wsproto for the rest.

:class:`InboundFrames` is created when the app accepts and parses one loop turn's share of
a read at a time (``websocket_slices.SlicedReader`` calls :meth:`InboundFrames.parse`): the
frames that begin within ``SLICE`` bytes go to ``websocket_fastpath`` while wsproto holds
no partial frame or message and no extension is active, everything else (control frames,
fragments, anything the fast path refuses) to wsproto, at most ``SLICE`` bytes per turn.
Messages go to the inbox, pings are answered through the writer, and the close handshake
and protocol errors are ``WebSocketClosing``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from gateway.streams import websocket_fastpath as fastpath
from gateway.streams.websocket_close import MESSAGE_TOO_BIG, CloseState, WebSocketClosing
from gateway.streams.websocket_messages import MessageAssembler, MessageTooBig
from gateway.streams.websocket_slices import SLICE

if TYPE_CHECKING:
    from gateway.asgi import Message
    from gateway.streams.websocket_inbox import Inbox
    from gateway.streams.websocket_writer import FrameWriter


class InboundFrames:
    """Parses the frames of one accepted WebSocket into inbox messages and close events."""

    __slots__ = (
        "_assembler",
        "_closing",
        "_discarded",
        "_extension",
        "_fast_path",
        "_frames",
        "_inbox",
        "_simple",
        "_writer",
    )

    def __init__(
        self,
        frames: FrameConnection,
        closing: WebSocketClosing,
        inbox: Inbox,
        writer: FrameWriter,
        max_message_size: int,
        *,
        extension: bool,
        discarded: Callable[[int], None],
    ) -> None:
        self._frames = frames
        self._closing = closing
        self._inbox = inbox
        self._writer = writer
        # Read credit for bytes thrown away after a close or an error.
        self._discarded = discarded
        self._extension = extension
        self._assembler = MessageAssembler(max_message_size)
        self._simple = fastpath.SimpleFrameReader(max_message_size)
        # True while the fast path may decode the next frame: no extension, C unmasking
        # present, and wsproto holds no partial frame or message (checked after each use).
        self._fast_path = not extension and fastpath.wsproto_idle(frames)

    def parse(self, data: bytes, offset: int) -> int:
        """One loop turn's share of ``data[offset:]``; returns the offset it got to."""
        frames, closing = self._frames, self._closing
        size = len(data)
        state = closing.state
        # While our state is OPEN wsproto's is too: its close and its errors change ours.
        if state is not CloseState.OPEN and (state is not CloseState.CLOSING or frames.state is ConnectionState.CLOSED):
            # After a close or an error, what follows is discarded (RFC 6455 §5.5.1, §7.1.7).
            self._discarded(size - offset)
            return size
        stop = min(offset + SLICE, size)
        position = offset
        reader = self._simple
        if reader.needed or (self._fast_path and state is CloseState.OPEN):
            messages: list[Message] = []
            position = reader.feed(data, messages, offset, stop)
            if state is CloseState.OPEN:  # after our close, data is discarded (§5.5.1)
                inbox = self._inbox
                for message in messages:
                    inbox.put(message)
            if position >= stop:  # all of it, or this turn's share
                self._inbox.credit(position - offset)
                return position
        # wsproto from a frame boundary (or inside its own partial frame), this turn's share.
        frames.receive_data(data[position:stop])
        for event in frames.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._message_part(event, closing)
            elif isinstance(event, Ping):
                # Once our close is sent, pings go unanswered (RFC 6455 §5.5.1, §5.5.2).
                if frames.state is ConnectionState.OPEN:
                    self._writer.pong_soon(frames.send(event.response()))
            elif isinstance(event, Pong):
                closing.pong_received()
            elif isinstance(event, CloseConnection):
                closing.close_frame_received(event)
            if not closing.reading:
                break  # what follows a close or a failure is discarded
        self._fast_path = not self._extension and fastpath.wsproto_idle(frames)
        self._inbox.credit(stop - offset)
        return stop

    def _message_part(self, event: TextMessage | BytesMessage, closing: WebSocketClosing) -> None:
        if closing.state is not CloseState.OPEN:
            return  # RFC 6455 §5.5.1: after sending close, data frames are discarded
        try:
            message = self._assembler.add(event)
        except MessageTooBig as exc:
            closing.protocol_error(MESSAGE_TOO_BIG, str(exc))
            return
        if message is not None:
            self._inbox.put(message)
