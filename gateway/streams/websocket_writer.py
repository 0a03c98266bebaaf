"""Writes one WebSocket's frames as ``Data`` events, in order, from coroutines and callbacks.

The app's ``send()`` awaits its write (backpressure); frames born in callbacks (a pong, the
reply to a close, a keep-alive ping) are queued and written by one short-lived task. A lock
keeps the two apart: an HTTP/2 adapter may wait for window between two pieces of one write,
and the frames of two writers must not interleave.
"""

from __future__ import annotations

import asyncio
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
        "_lock",
        "_pongs",
        "_queue_task",
        "_queued",
        "_sender",
        "_stream_id",
        "_tasks",
        "ended",
    )

    def __init__(self, sender: StreamSender, stream_id: int, tasks: set[asyncio.Task[None]]) -> None:
        self._sender = sender
        self._stream_id = stream_id
        self._tasks = tasks
        self._lock = asyncio.Lock()
        self._queued: list[bytes] = []
        self._pongs: list[bytes] = []
        self._queue_task: asyncio.Task[None] | None = None
        self._end_after_queue = False
        self.ended = False

    async def write(self, data: bytes) -> None:
        """Write frames and wait while the peer cannot take more."""
        if self.ended:
            raise WebSocketClosedError("the WebSocket connection is gone")
        async with self._lock:
            await self._sender.stream_send(Data(self._stream_id, data))

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
                async with self._lock:
                    await self._sender.stream_send(Data(self._stream_id, data))
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
