"""Parsing a WebSocket's inbound bytes a bounded share per event-loop turn.

One read can hold tens of thousands of tiny frames: a flood of one-byte fragments parses at
some 50,000 frames a second, so a 256 KiB read would hold up every other connection for the
better part of a second. :class:`SlicedReader` lets the stream's parser take one share of
a read per loop turn (the parser decides how much: frames that begin within ``SLICE``
bytes, or ``SLICE`` bytes for wsproto) and keeps the rest, with the offset where parsing
resumes, for the next turn: no copy of the rest is made. Bytes not parsed yet hold back
their read credit, so the adapter stops reading meanwhile and the backlog stays small.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

# Frames that begin within this many bytes of where parsing resumed are decoded in one loop
# turn (a large frame is a copy, not parsing work, so it goes whole); wsproto gets at most
# this many bytes per turn.
SLICE = 4 * 1024


class SlicedReader:
    """Bytes (and the peer's end) in arrival order, parsed a share per loop turn.

    ``parse(data, offset)`` parses what one turn may from ``data[offset:]`` and returns
    the offset it got to (greater than ``offset``; ``len(data)`` once done).
    """

    __slots__ = ("_backlog", "_loop", "_offset", "_parse", "_peer_ended")

    def __init__(
        self,
        parse: Callable[[bytes, int], int],
        peer_ended: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # Looked up once (asyncio.get_running_loop() costs a getpid() on CPython 3.11).
        self._loop = loop
        self._parse = parse
        self._peer_ended = peer_ended
        # Bytes waiting for their turn; None marks the peer's end behind them.
        self._backlog: collections.deque[bytes | None] = collections.deque()
        # Where parsing resumes in the first backlog entry.
        self._offset = 0

    def feed(self, data: bytes) -> None:
        """Bytes read from the peer: parsed now as far as one turn may, the rest later."""
        backlog = self._backlog
        if backlog:
            backlog.append(data)
            return
        offset = self._parse(data, 0)
        if offset < len(data):
            backlog.append(data)
            self._offset = offset
            self._later()

    def _later(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self._next_slice)

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
            offset = self._parse(data, self._offset)
            if offset < len(data):
                self._offset = offset
            else:
                backlog.popleft()
                self._offset = 0
        if backlog:
            self._later()
