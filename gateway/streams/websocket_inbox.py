"""What waits for the app's ``receive()``, and the read credit it holds back.

Bytes the stream has parsed are handed back to the protocol adapter as read credit
(``body_consumed``: HTTP/1.1 reads on, HTTP/2 sends WINDOW_UPDATE) unless the app has
fallen behind: then the credit is kept until ``receive()`` catches up, so a fast client is
never read faster than the app takes its messages.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from gateway.asgi import Message

# Messages the app has not received yet before credit is withheld; so is more than
# ``max_bytes`` of them.
MAX_QUEUED_MESSAGES = 16


class Inbox:
    """The app's side of one WebSocket: queued messages, then ``websocket.disconnect``."""

    __slots__ = (
        "_bytes",
        "_give_credit",
        "_handling",
        "_loop",
        "_max_bytes",
        "_messages",
        "_waiter",
        "disconnect",
        "withheld",
    )

    def __init__(
        self, give_credit: Callable[[int], None], max_bytes: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        # The stream's loop, looked up once: asyncio.get_running_loop() makes a getpid()
        # system call on CPython 3.11, and this runs for every message the app waits for.
        self._loop = loop
        self._give_credit = give_credit
        self._max_bytes = max_bytes
        self._messages: collections.deque[Message] = collections.deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        # Read credit kept back while the app is behind.
        self.withheld = 0
        self.disconnect: Message | None = None
        # True from the moment receive() returns a websocket.receive until the next call.
        self._handling = False

    @property
    def app_may_reply(self) -> bool:
        """True while the app holds messages it may still answer: queued or being handled."""
        return self._handling or bool(self._messages)

    def put(self, message: Message) -> None:
        """Queue a message for ``receive()``."""
        self._messages.append(message)
        data = message.get("bytes")
        self._bytes += len(data) if data is not None else len(message.get("text") or "")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def credit(self, size: int) -> None:
        """``size`` bytes were parsed: hand the credit back unless the app is behind."""
        if self.disconnect is None and (len(self._messages) >= MAX_QUEUED_MESSAGES or self._bytes > self._max_bytes):
            self.withheld += size
            return
        size += self.withheld
        self.withheld = 0
        if size:
            self._give_credit(size)

    def close(self, code: int, reason: str) -> None:
        """The WebSocket is over; the first cause's code is the one the app sees."""
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.credit(0)
        self._wake()

    def next_message(self) -> Message | None:
        """The next message, ``websocket.disconnect`` (again and again) once closed, or None
        while the app must wait (for :meth:`arrival`). Synchronous, so ``receive()`` awaits
        a coroutine less per message."""
        messages = self._messages
        if messages:
            message = messages.popleft()
            data = message.get("bytes")
            self._bytes -= len(data) if data is not None else len(message.get("text") or "")
            if self.withheld and not self._app_is_behind():
                self.credit(0)
            self._handling = message["type"] == "websocket.receive"
            return message
        self._handling = False
        if self.disconnect is not None:
            return dict(self.disconnect)
        return None

    def arrival(self) -> asyncio.Future[None]:
        """A future done when a message or the end arrives (after :meth:`next_message` gave None)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        return waiter

    def _app_is_behind(self) -> bool:
        return len(self._messages) >= MAX_QUEUED_MESSAGES or self._bytes > self._max_bytes

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
