"""A listener that accepts only while ``--max-connections`` leaves room (process layer).

asyncio's ``Server`` has no public way to stop accepting for a while, and it accepts up to
``backlog`` connections per readiness event before any of them reaches our code, so a limit
counted in the connections could be overshot by a whole backlog. This listener runs its own
accept loop on the listening socket: it waits for a free place *before* each ``accept()``,
so connections beyond the limit stay in the kernel's listen backlog (the client's connect
has completed; its request waits) and are accepted, in order, as places free up. Each
accepted socket becomes a connection through ``loop.connect_accepted_socket``, the same
transports (and TLS handshake, with its timeout) ``create_server`` gives.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Protocol

from gateway.limits.connections import ConnectionGate, ConnectionSlot

log = logging.getLogger("gateway.error")

# accept() failures that mean the process is out of a resource, not that one client went
# away: wait before trying again, as asyncio's own servers do, instead of spinning.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESOURCE_RETRY_SECONDS = 1.0


class SlotProtocolFactory(Protocol):
    """Makes the protocol of one accepted connection, which releases ``slot`` when it ends."""

    def __call__(self, slot: ConnectionSlot | None = None) -> asyncio.BaseProtocol:
        """The new connection's protocol."""


class GatedListener:
    """Accepts on ``sock`` while ``gate`` has room; ``close``/``wait_closed`` like ``asyncio.Server``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: SlotProtocolFactory,
        *,
        gate: ConnectionGate,
        ssl_context: ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol_factory = protocol_factory
        self._gate = gate
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout if ssl_context is not None else None
        self._starting: set[asyncio.Task[None]] = set()
        sock.setblocking(False)
        self._task = loop.create_task(self._accept_forever())

    async def _accept_forever(self) -> None:
        gate = self._gate
        try:
            while True:
                await gate.wait_for_room()
                try:
                    connection, _ = await self._loop.sock_accept(self._sock)
                except OSError as exc:
                    if exc.errno in _RESOURCE_ERRNOS:
                        log.error("cannot accept connections: %s; trying again in %gs", exc, RESOURCE_RETRY_SECONDS)
                        await asyncio.sleep(RESOURCE_RETRY_SECONDS)
                    else:  # e.g. a connection reset while it waited in the backlog
                        log.debug("accept failed: %s", exc)
                    continue
                slot = gate.try_acquire()
                while slot is None:  # another listener took the last place meanwhile
                    await gate.wait_for_room()
                    slot = gate.try_acquire()
                self._start(connection, slot)
        finally:
            self._sock.close()

    def _start(self, connection: socket.socket, slot: ConnectionSlot) -> None:
        task = self._loop.create_task(self._connect(connection, slot))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _connect(self, connection: socket.socket, slot: ConnectionSlot) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: self._protocol_factory(slot),
                connection,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        except Exception as exc:
            # The connection never started (a failed TLS handshake or its timeout): its
            # protocol will not see connection_lost, so the place is given back here.
            slot.release()
            connection.close()
            log.debug("connection failed before it started: %s", exc)
        except BaseException:  # cancelled at shutdown
            slot.release()
            connection.close()
            raise

    def close(self) -> None:
        """Stop accepting and close the listening socket; connections being set up are dropped."""
        self._task.cancel()
        for task in self._starting:
            task.cancel()

    def is_serving(self) -> bool:
        """True until :meth:`close`."""
        return not self._task.done() and not self._task.cancelled()

    async def wait_closed(self) -> None:
        """Wait until the accept loop has ended and closed the listening socket."""
        await asyncio.gather(self._task, return_exceptions=True)
