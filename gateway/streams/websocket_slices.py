"""Parsing a WebSocket's inbound bytes a slice per event-loop turn.

One read can hold tens of thousands of tiny frames: a flood of one-byte fragments parses at
some 50,000 frames a second, so a 256 KiB read would hold up every other connection for the
better part of a second. :class:`SlicedReader` hands the stream's parser at most
``SLICE`` bytes per loop turn. Bytes not parsed yet hold back their read credit, so the
adapter stops reading meanwhile and the backlog stays small. The rest of a large binary
frame the fast path is collecting costs a copy, not parsing: it goes whole.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

SLICE = 4 * 1024


class SlicedReader:
    """Bytes (and the peer's end) in arrival order, parsed ``SLICE`` bytes per loop turn."""

    __slots__ = ("_backlog", "_collecting", "_parse", "_peer_ended")

    def __init__(
        self, parse: Callable[[bytes], None], peer_ended: Callable[[], None], collecting: Callable[[], bool]
    ) -> None:
        self._parse = parse
        self._peer_ended = peer_ended
        self._collecting = collecting
        # Bytes waiting for their turn; None marks the peer's end behind them.
        self._backlog: collections.deque[bytes | None] = collections.deque()

    def feed(self, data: bytes) -> None:
        """Bytes read from the peer: parsed now if small, else a slice per loop turn."""
        backlog = self._backlog
        if not backlog and (len(data) <= SLICE or self._collecting()):
            self._parse(data)
            return
        if not backlog:
            asyncio.get_running_loop().call_soon(self._next_slice)
        backlog.append(data)

    def end(self) -> None:
        """The peer sends nothing more: noted after the bytes that came before."""
        if self._backlog:
            self._backlog.append(None)
        else:
            self._peer_ended()

    def _next_slice(self) -> None:
        backlog = self._backlog
        data = backlog[0]
        if data is None:
            backlog.popleft()
            self._peer_ended()
        else:
            if len(data) > SLICE and not self._collecting():
                backlog[0], data = data[SLICE:], data[:SLICE]
            else:
                backlog.popleft()
            self._parse(data)
        if backlog:
            asyncio.get_running_loop().call_soon(self._next_slice)
