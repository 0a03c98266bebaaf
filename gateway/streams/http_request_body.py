"""The request body on its way to the app: pieces held until ``receive()``, then the end.

A :class:`RequestBody` belongs to one :class:`~gateway.streams.http.HTTPStream`. The
protocol adapter's ``Body`` and ``EndBody`` events land here; the app's ``receive()`` takes
everything held so far as one ``http.request`` message (and hands the bytes back as read
credit), and waits here when nothing has arrived yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_EMPTY_REQUEST: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": False}


class RequestBody:
    """Body pieces not yet given to the app, whether the body is complete, and the wait."""

    __slots__ = ("_chunks", "_final_given", "_waiter", "complete", "received")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        # The body has ended (EndBody), and the app has been told (more_body False).
        self.complete = False
        self._final_given = False
        # Bytes of body received in all (for the access log and metrics).
        self.received = 0
        self._waiter: asyncio.Future[None] | None = None

    def add(self, data: bytes) -> None:
        """A piece of body from the client."""
        self._chunks.append(data)
        self.received += len(data)

    def next_message(self, consumed: Callable[[int], None]) -> dict[str, Any] | None:
        """The ``http.request`` message due now, or None until more arrives.

        ``consumed`` hears how many bytes the app took: room for the adapter to read more.
        """
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            consumed(len(data))
            if self.complete:
                self._final_given = True
            return {"type": "http.request", "body": data, "more_body": not self.complete}
        if self.complete and not self._final_given:
            self._final_given = True
            return _EMPTY_REQUEST.copy()
        return None

    async def arrival(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until :meth:`wake` (a piece, the end, a disconnect, the response done)."""
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        """Something the waiting ``receive()`` must look at has happened."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
