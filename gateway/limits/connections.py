"""Per-connection limits: connections open in one worker, and connections per client address.

:class:`ConnectionGate` (``--max-connections``) is asked *before* a connection is accepted:
when it is full, the listeners stop calling ``accept()`` and new connections wait in the
kernel's listen backlog, as nginx's ``worker_connections`` makes them wait, instead of being
accepted and dropped. It is thread-safe because Windows workers accept from threads
(``platform.SharedSocketAcceptor``). :class:`AddressConnections`
(``--max-connections-per-ip``) counts open connections per client address; a connection
beyond the limit is closed right after it is accepted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from gateway.config import Config
from gateway.limits.rejections import RejectionLog


class ConnectionSlot:
    """One place in a :class:`ConnectionGate`, held by one accepted connection.

    :meth:`release` may be called more than once (the connection's end and a failed start
    both call it); only the first gives the place back.
    """

    __slots__ = ("_gate",)

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate: ConnectionGate | None = gate

    def release(self) -> None:
        """Give the place back to the gate (on the event loop's thread)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release()


class ConnectionGate:
    """At most ``limit`` connections open at once in this worker (``--max-connections``).

    Listeners wait for room *before* accepting (:meth:`wait_for_room`, or
    :meth:`wait_for_room_blocking` in an accept thread) and take a :class:`ConnectionSlot`
    after it (:meth:`try_acquire`); the connection releases it when it ends. Places are
    released on the event loop's thread only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()
        self._room = threading.Event()
        self._room.set()
        self._waiters: list[asyncio.Future[None]] = []
        self.paused_count = 0  # times accepting stopped because the gate was full

    @property
    def open(self) -> int:
        """Connections holding a place now."""
        return self._open

    def try_acquire(self) -> ConnectionSlot | None:
        """A place for a connection just accepted, or ``None`` when all are taken."""
        with self._lock:
            if self._open >= self.limit:
                return None
            self._open += 1
            if self._open >= self.limit:
                self._room.clear()
                self.paused_count += 1
            return ConnectionSlot(self)

    def release(self) -> None:
        """One connection ended: wake the listeners waiting for room."""
        with self._lock:
            self._open -= 1
            self._room.set()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_room(self) -> None:
        """Return once a place is free (on the event loop)."""
        while not self._room.is_set():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wait_for_room_blocking(self, timeout: float) -> bool:
        """Block (an accept thread) until a place is free; False after ``timeout`` seconds."""
        return self._room.wait(timeout)


class AddressConnections:
    """Open connections per client address, at most ``limit`` each (``--max-connections-per-ip``).

    An address is in the table only while it has open connections (the entry goes when its
    count drops to zero), so the table never holds more entries than there are open
    connections, which the operating system's descriptor limit and ``--max-connections``
    bound.
    """

    __slots__ = ("_counts", "_log", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._log = RejectionLog("--max-connections-per-ip")

    def __len__(self) -> int:
        """Addresses with open connections."""
        return len(self._counts)

    def count(self, host: str) -> int:
        """Open connections from ``host``."""
        return self._counts.get(host, 0)

    def opened(self, client: Sequence[Any] | None) -> str | None:
        """Count a new connection: its address key, or ``None`` if it must be closed.

        A connection without an address (not TCP) is not counted and gets ``""``.
        """
        if not client:
            return ""
        host = str(client[0])
        count = self._counts.get(host, 0)
        if count >= self.limit:
            self._log.refused(client, f"{count} connections open from this address, closed")
            return None
        self._counts[host] = count + 1
        return host

    def closed(self, host: str) -> None:
        """A connection counted by :meth:`opened` (under ``host``) has ended."""
        if not host:
            return
        count = self._counts.get(host, 0) - 1
        if count > 0:
            self._counts[host] = count
        else:
            self._counts.pop(host, None)

    @property
    def refusals(self) -> int:
        """How many were refused so far."""
        return self._log.total

    def close(self) -> None:
        """Write the pending log summary (server shutdown)."""
        self._log.close()


class ConnectionLimits:
    """The connection limits ``Config`` asks for, shared by the listeners and connections."""

    __slots__ = ("gate", "per_address")

    def __init__(self, gate: ConnectionGate | None, per_address: AddressConnections | None) -> None:
        self.gate = gate
        self.per_address = per_address

    @classmethod
    def from_config(cls, config: Config) -> ConnectionLimits | None:
        """The limits ``config`` asks for, or ``None`` when it asks for none."""
        gate = ConnectionGate(config.max_connections) if config.max_connections else None
        per_address = AddressConnections(config.max_connections_per_ip) if config.max_connections_per_ip else None
        if gate is None and per_address is None:
            return None
        return cls(gate, per_address)

    def refusals(self) -> dict[str, int]:
        """Connections refused so far, by reason (``asgigw_rejections_total``)."""
        return {} if self.per_address is None else {"connections_per_ip": self.per_address.refusals}

    def close(self) -> None:
        """Write pending log summaries (server shutdown)."""
        if self.per_address is not None:
            self.per_address.close()
