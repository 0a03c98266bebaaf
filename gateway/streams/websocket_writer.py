"""Writes one WebSocket's frames as ``Data`` events, in order, from coroutines and callbacks.

The app's ``send()`` awaits its write (backpressure); frames born in callbacks (a pong, the
reply to a close, a keep-alive ping) are queued and written by one short-lived task. Writers
take turns, first come first served: an HTTP/2 adapter may wait for window between two
pieces of one write, and the frames of two writers must not interleave. The turn is a flag
and a queue made only when two writers meet, not an ``asyncio.Lock``: the uncontended
write of every message then costs no coroutine and no callback for locking.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway.events import Data, EndData
from gateway.streams.websocket_messages import WebSocketClosedError

if TYPE_CHECKING:
    from gateway.streams.http import StreamSender


class FrameWriter:
    """The outbound side of one WebSocket stream."""

    __slots__ = (
        "_end_after_queue",
        "_pongs",
        "_queue_task",
        "_queued",
        "_sender",
        "_stream_id",
        "_tasks",
        "_turns",
        "_writing",
        "ended",
    )

    def __init__(self, sender: StreamSender, stream_id: int, tasks: set[asyncio.Task[None]]) -> None:
        self._sender = sender
        self._stream_id = stream_id
        self._tasks = tasks
        # True while a writer has its turn; the writers waiting for theirs, in order.
        self._writing = False
        self._turns: collections.deque[asyncio.Future[None]] | None = None
        self._queued: list[bytes] = []
        self._pongs: list[bytes] = []
        self._queue_task: asyncio.Task[None] | None = None
        self._end_after_queue = False
        self.ended = False

    async def write(self, data: bytes) -> None:
        """Write frames and wait while the peer cannot take more."""
        if self.ended:
            raise WebSocketClosedError("the WebSocket connection is gone")
        if self._writing:
            await self._wait_turn()
        else:
            self._writing = True
        try:
            await self._sender.stream_send(Data(self._stream_id, data))
        finally:
            self._next_turn()

    async def _wait_turn(self) -> None:
        turns = self._turns
        if turns is None:
            turns = self._turns = collections.deque()
        waiter = asyncio.get_running_loop().create_future()
        turns.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                if waiter in turns:  # not yet passed over by _next_turn
                    turns.remove(waiter)
            else:  # the turn came with the cancellation: hand it on
                self._next_turn()
            raise

    def _next_turn(self) -> None:
        turns = self._turns
        while turns:
            waiter = turns.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the turn passes on; _writing stays True
                return
        self._writing = False

    def write_soon(self, data: bytes, *, end: bool = False) -> None:
        """Queue frames from a callback; with ``end``, finish the stream after them."""
        self._queued.append(data)
        self._end_after_queue = self._end_after_queue or end
        if self._queue_task is None:
            self._queue_task = self.spawn(self._write_queued())

    def pong_soon(self, data: bytes) -> None:
        """Queue a pong; past a few unsent ones, keep only the latest.

        RFC 6455 §5.5.3 allows answering only the latest ping; so a peer that pings fast
        while not reading cannot make pongs pile up here, while a burst of pings from a peer
        that reads still gets every answer.
        """
        pongs = self._pongs
        pongs.append(data)
        if len(pongs) > _MAX_QUEUED_PONGS:
            del pongs[:-1]
        if self._queue_task is None:
            self._queue_task = self.spawn(self._write_queued())

    async def _write_queued(self) -> None:
        try:
            while (self._queued or self._pongs) and not self.ended:
                data = b"".join((*self._pongs, *self._queued))
                self._pongs.clear()
                self._queued.clear()
                if self._writing:
                    await self._wait_turn()
                else:
                    self._writing = True
                try:
                    await self._sender.stream_send(Data(self._stream_id, data))
                finally:
                    self._next_turn()
            if self._end_after_queue:
                self.end()
        finally:
            self._queue_task = None

    def end(self) -> None:
        """Finish the bytes: HTTP/1.1 closes the connection, HTTP/2 ends the stream."""
        if not self.ended:
            self.ended = True
            self.spawn(self._sender.stream_send(EndData(self._stream_id)))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coroutine`` as a task tracked with the app tasks (shutdown waits for it)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# Pongs waiting for a peer that does not read; past this only the latest is kept.
_MAX_QUEUED_PONGS = 16
