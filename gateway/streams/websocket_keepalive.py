"""Server pings for open WebSockets (RFC 6455 §5.5.2-5.5.3): find peers that are gone.

A peer that vanished without closing TCP (a laptop lid, a dropped NAT mapping) would hold
its connection and app task forever. Every ``interval`` seconds the server pings; if no
pong arrives within ``timeout`` seconds, the stream closes and the app gets
``websocket.disconnect``. One timer handle per WebSocket, no task.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol


class PingTarget(Protocol):
    """What :class:`KeepAlive` needs from a WebSocket stream."""

    def send_ping(self, payload: bytes) -> None:
        """Send a ping frame with ``payload``."""

    def peer_unresponsive(self) -> bool:
        """No pong in time: close, and return True (False keeps the peer for another round)."""


class KeepAlive:
    """Alternates between "ping due" and "pong due" on one timer."""

    __slots__ = ("_awaiting_pong", "_interval", "_loop", "_target", "_timeout", "_timer")

    def __init__(self, interval: float, timeout: float, target: PingTarget) -> None:
        self._loop = asyncio.get_running_loop()
        self._interval = interval
        self._timeout = timeout
        self._target = target
        self._awaiting_pong = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval, self._ping_due)

    def _ping_due(self) -> None:
        self._awaiting_pong = True
        self._target.send_ping(os.urandom(4))
        self._timer = self._loop.call_later(self._timeout, self._pong_due)

    def _pong_due(self) -> None:
        if self._awaiting_pong and self._target.peer_unresponsive():
            self._timer = None
            return
        # The next ping goes out ``interval`` after the previous one (at least right away).
        self._timer = self._loop.call_later(max(self._interval - self._timeout, 0.0), self._ping_due)

    def pong_received(self) -> None:
        """The peer answered. Any pong proves it is there, unsolicited ones (§5.5.3) too."""
        self._awaiting_pong = False

    def stop(self) -> None:
        """Cancel the timer (the WebSocket is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
