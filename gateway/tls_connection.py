"""A :class:`~gateway.connection.Connection` on a TLS transport, read through a buffer.

Given a plain ``asyncio.Protocol``, the SSL protocols of asyncio and of uvloop decrypt each
read with ``SSLObject.read(256 KiB)``: a new 256 KiB ``bytes``, shrunk to the few hundred
bytes a request takes. glibc serves an allocation that large with ``mmap`` until a freed
block raises its mmap threshold, so every request could cost an mmap, an mremap and a
munmap (about 11 µs, a quarter of a small request's CPU time), depending on what the
process happened to free before. Given a buffered protocol (``get_buffer`` /
``buffer_updated``), both SSL protocols decrypt into the buffer it offers instead, and only
the bytes received are copied out: no large allocation, whatever the allocator's state.

The buffer is shared by the connections of one thread (one event loop): an SSL protocol
calls ``get_buffer``, decrypts into it and calls ``buffer_updated`` in one go, with no
other connection's code in between, and ``buffer_updated`` copies the bytes out first.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from gateway.connection import Connection

if TYPE_CHECKING:
    from gateway.context import ServerContext
    from gateway.limits import ConnectionSlot
    from gateway.proxy_protocol import ProxyHeader

# What one read may decrypt: 16 TLS records of 16 KiB (RFC 8446 §5.1), as much as the SSL
# protocols themselves read at once.
READ_BUFFER_SIZE = 256 * 1024

_thread_buffers = threading.local()


def read_buffer() -> memoryview:
    """This thread's decryption buffer (made on first use: one per event loop thread)."""
    view: memoryview | None = getattr(_thread_buffers, "view", None)
    if view is None:
        view = _thread_buffers.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class TLSConnection(Connection, asyncio.BufferedProtocol):
    """A Connection whose SSL transport decrypts into a shared buffer (see the module doc).

    Everything else (ALPN, flow control, writes, timers) is the Connection's. TLS needs no
    HTTP/2 preface sniffing (ALPN chose the protocol), so reads go straight to the adapter.
    """

    def __init__(
        self, context: ServerContext, *, proxy_header: ProxyHeader | None = None, slot: ConnectionSlot | None = None
    ) -> None:
        super().__init__(context, proxy_header=proxy_header, slot=slot)
        self._read_view = read_buffer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Finish as a Connection does, then let go of the SSL transport at once.

        The adapter and its streams refer back to this object, so it waits for the cyclic
        garbage collector; its SSL transport holds the SSL protocol with a 256 KiB read
        buffer (asyncio's is zero-filled, so resident) and OpenSSL's state for the
        connection, which are thus freed on close rather than at the next full collection.
        """
        super().connection_lost(exc)
        self._transport = None

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the SSL protocol decrypts the next bytes (any size it is given is fine).

        A memoryview, not the bytearray: asyncio's SSL protocol reads on into
        ``buffer[offset:]``, which must be a view of the same memory, not a copy.
        """
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` decrypted bytes are at the start of the buffer: hand a copy on."""
        protocol = self.protocol
        if protocol is not None:  # None: refused in connection_made, closing
            protocol.feed(bytes(self._read_view[:nbytes]))
