"""``--body-timeout`` for HTTP/2: a stream whose client stalls mid-body is reset.

nginx's ``client_body_timeout``, per stream: a stream whose request body has not ended and
that received no DATA for ``body_timeout`` seconds is reset, while the other streams on the
connection go on. Only the client's own silence counts. A stream held up by us (its app has
not read what is buffered, so no WINDOW_UPDATE went out, or the connection window is shut)
is not timed, nor one whose client waits for a ``100 Continue`` the app has not asked for
(RFC 9110 §10.1.1).

A stream's clock starts when its HEADERS come (or its 100 goes out) and again each time the
app has taken the body received so far; a DATA frame the app has not read yet holds the
clock (the stream is then held up by us), so DATA frames themselves cost nothing here.

Cost: moving a deadline later stores a float; one ``TimerHandle`` per connection is armed
for the earliest deadline, and only while some stream has one. A request whose HEADERS end
the stream is never watched.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class BodyTimeout:
    """Request-body deadlines for the streams of one HTTP/2 connection.

    ``on_stall(stream_id)`` is called for a stream whose deadline passed. It returns True
    when it reset the stream (or the stream is gone), False when the stream is held up by
    us, in which case the stream's clock starts again.
    """

    __slots__ = ("_deadlines", "_loop", "_on_stall", "_seconds", "_timer")

    def __init__(self, seconds: float, on_stall: Callable[[int], bool]) -> None:
        self._seconds = seconds
        self._on_stall = on_stall
        # Stream id -> loop time by which DATA must come; inf while a 100 Continue is owed.
        self._deadlines: dict[int, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def watched(self) -> int:
        """How many streams are waiting for request body."""
        return len(self._deadlines)

    def watch(self, stream_id: int, *, expect_continue: bool) -> None:
        """A request whose body is still to come (its HEADERS did not end the stream)."""
        if expect_continue:
            # The client waits for our 100 before it sends (RFC 9110 §10.1.1).
            self._deadlines[stream_id] = math.inf
        else:
            self._deadlines[stream_id] = 0.0
            self.restart(stream_id)

    def restart(self, stream_id: int) -> None:
        """The app took the body so far, or a 100 went out: the client's clock starts anew."""
        deadlines = self._deadlines
        if stream_id in deadlines:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            deadline = deadlines[stream_id] = loop.time() + self._seconds
            if self._timer is None:
                # Every deadline is "now + seconds", so an armed timer is never later than
                # this one: only a missing timer needs arming.
                self._timer = loop.call_at(deadline, self._expire)

    def restart_all(self) -> None:
        """Every timed stream starts anew (the connection window has just reopened)."""
        for stream_id, deadline in self._deadlines.items():
            if deadline != math.inf:
                self.restart(stream_id)

    def forget(self, stream_id: int) -> None:
        """The stream's body ended, or the stream is gone."""
        self._deadlines.pop(stream_id, None)

    def close(self) -> None:
        """The connection is done: no more checks."""
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        deadlines = self._deadlines
        earliest = math.inf
        # A copy: on_stall forgets the streams it resets, or all of them if it closes.
        for stream_id, deadline in list(deadlines.items()):
            if stream_id not in deadlines:
                continue
            if deadline <= now:
                if self._on_stall(stream_id):
                    deadlines.pop(stream_id, None)
                    continue
                deadline = deadlines[stream_id] = now + self._seconds
            earliest = min(earliest, deadline)
        if earliest != math.inf and deadlines:
            self._timer = loop.call_at(earliest, self._expire)
