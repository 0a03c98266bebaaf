"""The HTTP/2 adapter's open streams: each stream's app-side state, and what dropping one means.

A stream is in the table from its request to the end of its response (or its reset).
Dropping one hands the request bytes its app never read back to the client's windows (or
every reset upload would shrink the connection window for good) and stops its body timer;
when the table empties, ``on_idle`` tells the adapter (idle timer, or close when draining).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, ItemsView, ValuesView
from typing import TYPE_CHECKING

from gateway.events import StreamClosed
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_inbound_flow import InboundFlow

if TYPE_CHECKING:
    from gateway.protocols.common import Stream


class StreamState:
    """What the adapter tracks for one open stream."""

    __slots__ = ("body_left", "head", "received", "remote_done", "stream", "unread", "waiter", "websocket")

    def __init__(self, stream: Stream, *, head: bool = False, websocket: bool = False) -> None:
        self.stream = stream
        # An RFC 8441 extended CONNECT: DATA carries WebSocket bytes, END_STREAM is its FIN,
        # a reset is a disconnect rather than a cancelled request. Decided once, at open.
        self.websocket = websocket
        self.received = 0
        # Request bytes handed to the stream that its app has not read yet (§6.9 window).
        self.unread = 0
        self.remote_done = False
        self.waiter: asyncio.Future[None] | None = None
        self.head = head
        # Response bytes still owed by the app's Content-Length; -1 when it declared none.
        self.body_left = -1

    def wake(self) -> None:
        """Wake a sender waiting for flow-control window (or for the stream's end)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamTable:
    """Open streams by id; ``closing`` once the connection is going away."""

    __slots__ = ("_body_timeout", "_inbound", "_on_idle", "_streams", "closing")

    def __init__(self, inbound: InboundFlow, body_timeout: BodyTimeout, on_idle: Callable[[], None]) -> None:
        self._streams: dict[int, StreamState] = {}
        self._inbound = inbound
        self._body_timeout = body_timeout
        self._on_idle = on_idle
        self.closing = False

    def __len__(self) -> int:
        return len(self._streams)

    def __bool__(self) -> bool:
        return bool(self._streams)

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def get(self, stream_id: int) -> StreamState | None:
        return self._streams.get(stream_id)

    def values(self) -> ValuesView[StreamState]:
        return self._streams.values()

    def items(self) -> ItemsView[int, StreamState]:
        return self._streams.items()

    def add(self, stream_id: int, state: StreamState) -> None:
        self._streams[stream_id] = state

    def drop(self, stream_id: int) -> StreamState | None:
        """Forget a stream; its unread request bytes go back to the client's windows."""
        state = self._streams.pop(stream_id, None)
        if state is None:
            return None
        if not state.remote_done:
            self._body_timeout.forget(stream_id)  # gone mid-body
        if state.unread > 0 and not self.closing:
            self._inbound.acknowledge(state.unread, stream_id)
            state.unread = 0
        return state

    def done(self) -> None:
        """A stream has ended: tell the adapter when none is left."""
        if not self._streams and not self.closing:
            self._on_idle()

    def forget(self, stream_id: int) -> None:
        """Drop a stream that ended without us (reset, or closed on our side already)."""
        if self.drop(stream_id) is not None:
            self.done()

    def wake_all(self) -> None:
        for state in self._streams.values():
            state.wake()

    def end_all(self, *, cancel: bool) -> None:
        """The connection is going away: every stream's app sees ``http.disconnect``."""
        for stream_id, state in list(self._streams.items()):
            state.stream.handle(StreamClosed(stream_id))
            if cancel:
                state.stream.cancel()
            state.wake()
        self._streams.clear()
