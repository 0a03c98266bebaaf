"""The only socket code: one :class:`Connection` per accepted TCP connection.

It is an ``asyncio.Protocol`` (callbacks, no per-read ``await``). TLS is terminated by
asyncio's SSL transport before bytes reach it; it picks HTTP/1.1 from ALPN, hands bytes to
the protocol adapter, coalesces the adapter's writes into one ``transport.write`` per event
loop turn, applies backpressure in both directions and runs the connection's timer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from gateway.events import ConnectionInfo, Request
from gateway.logs import address_label
from gateway.protocols.common import FileShrank, ProtocolAdapter, read_file_chunks
from gateway.protocols.http1 import HTTP1Protocol
from gateway.protocols.http2 import PREFACE, HTTP2Protocol

if TYPE_CHECKING:
    from gateway.asgi import ASGIApp
    from gateway.context import ServerContext
    from gateway.limits import ConnectionSlot
    from gateway.proxy_protocol import ProxyHeader

log = logging.getLogger("gateway.error")

# Bytes per loop.sendfile() call. Each call must finish within --send-timeout, so a client
# that stops reading is dropped while one reading at 9 KiB/s or more is not (nginx's
# send_timeout also times each write, not the whole response).
_SENDFILE_SEGMENT = 256 * 1024
# Smaller files are read and written with the head: one write beats a write and a sendfile.
_SENDFILE_MIN_SIZE = 16 * 1024


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, object]:
    # Imported here, on a TLS connection, where gateway.tls is already loaded (it built the
    # listener context): at the top it would load cryptography into plain-HTTP servers.
    from gateway.tls import tls_extension

    return tls_extension(ssl_object)


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


class Connection(asyncio.BaseProtocol):
    """One client connection: transport callbacks, write buffer, flow control, timer.

    A protocol with ``data_received`` (the ``asyncio.Protocol`` interface) without deriving
    from ``asyncio.Protocol``: uvloop reads into a buffered protocol only when it is not an
    ``asyncio.Protocol``, and :class:`~gateway.tls_connection.TLSConnection` is one.

    ``proxy_header`` is the PROXY protocol header read before (``pre_tls.py``): its source
    address stands for the peer's. ``listener_app`` serves the connection instead of the
    application (``ConnectionInfo.listener_app``).
    """

    def __init__(
        self,
        context: ServerContext,
        *,
        proxy_header: ProxyHeader | None = None,
        listener_app: ASGIApp | None = None,
        slot: ConnectionSlot | None = None,
    ) -> None:
        self._context = context
        # The --max-connections place this connection holds (gateway/limits/listener.py),
        # and the address it is counted under for --max-connections-per-ip.
        self._slot = slot
        self._address_key: str | None = None
        self._proxy_header = proxy_header
        self._listener_app = listener_app
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.protocol: ProtocolAdapter | None = None
        # Bytes held back while we tell an HTTP/2 preface from HTTP/1.1 on a plain listener.
        self._sniffed: bytes | None = None
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._flush_scheduled = False
        self._closed = False
        self._deadline: float | None = None
        self._timeout_reason = ""
        self._timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self.info: ConnectionInfo | None = None
        # False on TLS (the kernel cannot encrypt) and on loops without loop.sendfile().
        self._sendfile = False

    # -- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Pick the protocol (ALPN) and start serving."""
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        client = _address(transport.get_extra_info("peername"))
        server = _address(transport.get_extra_info("sockname"))
        proxy_header = self._proxy_header
        if proxy_header is not None and proxy_header.source is not None:
            client, server = proxy_header.source, proxy_header.destination
        proxies = self._context.proxies
        self.info = ConnectionInfo(
            client=client,
            server=server,
            tls=ssl_object is not None,
            # Once per connection: every stream (HTTP/2, WebSocket) shares the same dict.
            tls_extension=_tls_extension(ssl_object) if ssl_object is not None else None,
            # Trust is a property of the peer, so it is decided once per connection.
            proxies=proxies if proxies is not None and proxies.trusts(client) else None,
            listener_app=self._listener_app,
        )
        limits = self._context.connection_limits
        if limits is not None and limits.per_address is not None:
            self._address_key = limits.per_address.opened(self.info.client)
            if self._address_key is None:  # over --max-connections-per-ip: close, unserved
                self._closed = True
                transport.close()
                return
        self._context.connections.add(self)
        self._sendfile = ssl_object is None
        http2 = self._context.config.http2
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self.protocol = HTTP2Protocol(self._context, self, self.info)
            return
        if http2 and ssl_object is None:
            self._sniffed = b""
        self.protocol = HTTP1Protocol(self._context, self, self.info)
        if self._context.shutting_down:
            self.protocol.shutdown()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client go straight to the protocol adapter."""
        if self.protocol is None:  # refused in connection_made, closing
            return
        if self._sniffed is not None:
            data = self._sniff(data)
            if not data:
                return
        self.protocol.feed(data)

    def _sniff(self, data: bytes) -> bytes:
        # RFC 9113 §3.3: a client with prior knowledge starts with the connection preface.
        # Its first line already tells it apart from any HTTP/1.1 request line; with that
        # line seen, the HTTP/2 adapter judges the rest and answers a bad preface with GOAWAY.
        data = self._sniffed + data if self._sniffed else data
        line = PREFACE[:16]
        if len(data) < len(line) and line.startswith(data):
            self._sniffed = data
            return b""
        self._sniffed = None
        if data.startswith(line):
            assert self.info is not None
            self.protocol = HTTP2Protocol(self._context, self, self.info)
        return data

    def upgrade_to_http2(self, request: Request, settings: bytes, leftover: bytes) -> None:
        """Serve HTTP/2 from here on; HTTP/1.1 has sent ``101 Switching Protocols``."""
        assert self.info is not None
        self._sniffed = None
        self.protocol = HTTP2Protocol(self._context, self, self.info, upgrade=(request, settings))
        if leftover:
            self.protocol.feed(leftover)

    def eof_received(self) -> bool:
        """The client half-closed; the adapter decides whether a response is still owed.

        On TLS the answer is always False: asyncio's SSL transport shuts down after the
        peer's EOF whatever this returns, and logs a warning for True. The adapter still
        hears the EOF; ``connection_lost`` follows.
        """
        if self.protocol is None or self._closed:
            # Closed by us: asyncio's SSL transport still reports the client's close_notify
            # that answers ours (RFC 8446 §6.1); the adapter has nothing left to hear.
            return False
        keep_open = self.protocol.feed_eof()
        return keep_open and not (self.info is not None and self.info.tls)

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is gone: wake writers, stop timers, tell the adapter."""
        self._closed = True
        self._context.connections.discard(self)
        self._release_limits()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._pending.clear()
        self.write_paused = False
        self._wake_writer()
        if self.protocol is not None:
            self.protocol.connection_lost()

    def _release_limits(self) -> None:
        key, self._address_key = self._address_key, None
        limits = self._context.connection_limits
        if key is not None and limits is not None and limits.per_address is not None:
            limits.per_address.closed(key)
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()

    def pause_writing(self) -> None:
        """The transport's buffer is full: app ``send()`` calls wait from now on."""
        self.write_paused = True
        self._start_stall_timer()

    def resume_writing(self) -> None:
        """The transport drained: waiting ``send()`` calls continue."""
        self.write_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._wake_writer()

    def _start_stall_timer(self) -> None:
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._context.config.send_timeout, self._on_write_stall)

    def _on_write_stall(self) -> None:
        self._stall_timer = None
        log.info(
            "%s - client read nothing for %gs (--send-timeout); dropping the connection",
            address_label(self.info.client if self.info is not None else None),
            self._context.config.send_timeout,
        )
        self.abort()

    # -- what protocol adapters use (gateway.protocols.common.Transport) ---------------

    def write(self, data: bytes, *, flush: bool = False) -> None:
        """Queue ``data``; everything queued in one loop turn goes out in one write.

        ``flush`` writes at once: the end of a response has nothing left to wait for, and
        skipping the scheduled callback saves a loop turn's work per request.
        """
        if self._closed:
            return
        if flush and not self._pending:
            # Nothing queued before it (a whole response, as most are): straight out.
            transport = self._transport
            if data and transport is not None and not transport.is_closing():
                transport.write(data)
            return
        if data:
            self._pending.append(data)
            self._pending_size += len(data)
        elif not flush:
            return
        if flush or self._pending_size >= self._context.config.write_buffer_size:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending = self._pending
        if not pending or self._transport is None or self._closed:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        if self._transport.is_closing():
            # The peer is gone and connection_lost is on its way: asyncio would drop the
            # bytes anyway, and log a warning for each write past the fifth.
            return
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport is paused for writing (or until the connection ends)."""
        self._flush()
        while self.write_paused and not self._closed:
            if self._drain_waiter is None:
                self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> None:
        """After what is queued, send ``count`` bytes of ``file`` from ``offset``.

        Plain TCP: ``loop.sendfile()``, which uses the kernel's sendfile where there is one
        (os.sendfile on Linux and macOS, TransmitFile on Windows' Proactor loop) and reads
        and writes itself elsewhere. TLS, small files and loops without it: chunks written
        through the normal buffer, waiting while the transport is paused.
        """
        if count < _SENDFILE_MIN_SIZE or not self._sendfile:
            await self._write_file(file, offset, count)
            return
        self._flush()
        end = offset + count
        try:
            while offset < end and not self._closed and self._transport is not None:
                size = min(end - offset, _SENDFILE_SEGMENT)
                sent = await asyncio.wait_for(
                    self._loop.sendfile(self._transport, file, offset, size), self._context.config.send_timeout
                )
                if sent < size:
                    raise FileShrank(f"file ended {end - offset - sent} bytes before the promised {count}")
                offset += sent
        except NotImplementedError:  # an event loop without sendfile support
            self._sendfile = False
            await self._write_file(file, offset, end - offset)
        except FileShrank:
            raise
        except TimeoutError:
            self._on_write_stall()
        except (OSError, RuntimeError) as exc:  # the client went away mid-file
            log.debug("%s - sendfile stopped: %s", address_label(self.info.client if self.info else None), exc)
            self.abort()

    async def _write_file(self, file: BinaryIO, offset: int, count: int) -> None:
        for chunk in read_file_chunks(file, offset, count, self._context.config.write_buffer_size):
            if self._closed:
                return
            self.write(chunk)
            if self.write_paused:
                await self.drain()

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Flush queued bytes, then close the transport."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        transport = self._transport
        if transport is not None:
            try:
                unsent = transport.get_write_buffer_size()
            except AttributeError:  # asyncio's SSL transport once its protocol has let go
                unsent = 0
            transport.close()
            if unsent:
                # Close waits for the buffer to drain: not forever.
                self._start_stall_timer()

    def abort(self) -> None:
        """Drop the connection at once, queued bytes included."""
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the client until :meth:`resume_reading`."""
        if not self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the client again."""
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- the one timer per connection ------------------------------------------------
    # Keep-alive, header and other timeouts reuse one TimerHandle: moving the deadline
    # later only stores a float, so a busy keep-alive connection does not create and
    # cancel a timer per request.

    def set_timeout(self, seconds: float, reason: str) -> None:
        """Close the connection ``seconds`` from now unless reset or cleared first."""
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        self._timeout_reason = reason
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def clear_timeout(self) -> None:
        """Cancel the pending timeout (the timer itself lapses when it next fires)."""
        self._deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._closed:
            return
        if self._loop.time() >= deadline:
            self._deadline = None
            metrics = self._context.metrics
            # An idle keep-alive connection or a drained one closing is no client's fault.
            if metrics is not None and self._timeout_reason not in ("keep-alive idle", "shutting down"):
                metrics.rejected("timeout")
            if self.protocol is not None:
                self.protocol.timeout(self._timeout_reason)
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    # -- server-side control ---------------------------------------------------------

    @property
    def idle(self) -> bool:
        """True when no request is in flight."""
        return self.protocol is None or self.protocol.idle

    def shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight, accept nothing new."""
        if self.protocol is not None:
            self.protocol.shutdown()

    def cancel(self) -> None:
        """Graceful timeout passed: cancel remaining app tasks and drop the connection."""
        if self.protocol is not None:
            self.protocol.cancel_streams()
        self.abort()
