"""What a connection sends before TLS: a PROXY protocol header, and the first byte.

Listeners that use TLS or ``--proxy-protocol`` are created without ``ssl=``; each accepted
connection starts with a :class:`ConnectionOpening`, which

1. reads the PROXY protocol header when the listener expects one (``proxy_protocol.py``),
   closing the connection with one WARNING line when the header is missing or invalid;
2. on a TLS listener, looks at the first byte of the client's own data: a TLS handshake
   record (``0x16``, RFC 8446 §5.1) goes through ``loop.start_tls``; anything else is plain
   HTTP sent to the HTTPS port and is answered by ``https_redirect.PlainHTTPOnTLSPort`` (400)
   or the redirect responder (308), instead of failing the handshake silently;
3. hands the transport to a :class:`~gateway.connection.Connection`.

``--tls-handshake-timeout`` (``--header-timeout`` on a plain listener) bounds steps 1 and 2
together, and the handshake again from there. The bytes read beyond the PROXY header (the start of a ClientHello, or of a
request) are never lost: they are given to the SSL protocol that ``start_tls`` installed, or
to the Connection, through the public Protocol methods.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, cast

from gateway.client_hello import NotClientHello, parse_client_hello
from gateway.connection import Connection
from gateway.logs import address_label
from gateway.proxy_protocol import ProxyHeader, ProxyHeaderParser, ProxyProtocolError
from gateway.tls_connection import TLSConnection, read_buffer

if TYPE_CHECKING:
    from gateway.acme.challenges import ChallengeFiles
    from gateway.asgi import ASGIApp
    from gateway.context import ServerContext
    from gateway.limits import ConnectionSlot

log = logging.getLogger("gateway.error")

TLS_HANDSHAKE_RECORD = 0x16
# RFC 8737 §3: the ALPN protocol an ACME CA's tls-alpn-01 validation offers, and only it.
ACME_TLS_ALPN = ("acme-tls/1",)
# Loop turns to wait for start_tls to install its SSL protocol (it does so in its first).
_INSTALL_TURNS = 3


class ConnectionOpening(asyncio.Protocol):
    """The first bytes of one connection, before it is handed to a :class:`Connection`.

    ``ssl_context`` is None on a plain listener (then only a PROXY header is read);
    ``plain_http_app`` answers plain HTTP that arrives on a TLS listener.
    """

    def __init__(
        self,
        context: ServerContext,
        *,
        ssl_context: ssl.SSLContext | None,
        proxy_protocol: bool,
        plain_http_app: ASGIApp | None,
        acme_challenges: ChallengeFiles | None = None,
        slot: ConnectionSlot | None = None,
    ) -> None:
        self._context = context
        # The --max-connections place (gateway/limits/): handed to the Connection, or given
        # back here when the connection ends before one exists.
        self._slot = slot
        self._loop = asyncio.get_running_loop()
        self._ssl_context = ssl_context
        self._parser = ProxyHeaderParser() if proxy_protocol else None
        self._proxy_header: ProxyHeader | None = None
        self._plain_http_app = plain_http_app
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "-"
        self._handed_over = False
        self._upgrade: asyncio.Task[None] | None = None
        # With --acme-domain: the ClientHello is read whole before TLS starts, so that an
        # acme-tls/1 validation gets the challenge certificate (None: not reading one).
        self._challenges = acme_challenges
        self._client_hello: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the timer for the PROXY header and first byte."""
        self._transport = cast(asyncio.Transport, transport)
        self._peer = address_label(transport.get_extra_info("peername"))
        self._timer = self._loop.call_later(self._timeout, self._timed_out)

    @property
    def _timeout(self) -> float:
        config = self._context.config
        return config.tls_handshake_timeout if self._ssl_context is not None else config.header_timeout

    def data_received(self, data: bytes) -> None:
        """Read the PROXY header if one is due, then hand over at the first client byte."""
        parser = self._parser
        if parser is not None:
            try:
                header = parser.feed(data)
            except ProxyProtocolError as exc:
                log.warning("%s - closing connection: %s", self._peer, _printable(str(exc)))
                self._close()
                return
            if header is None:
                return
            self._parser = None
            self._proxy_header = header
            data = parser.rest
        if self._client_hello is not None:
            self._read_client_hello(data)
        elif (
            data and self._challenges is not None and self._ssl_context is not None and data[0] == TLS_HANDSHAKE_RECORD
        ):
            self._client_hello = b""
            self._read_client_hello(data)
        elif data or self._ssl_context is None:
            self._hand_over(data)

    def _read_client_hello(self, data: bytes) -> None:
        """Wait for the whole ClientHello; pick the ACME challenge context if it asks for one."""
        buffered = self._client_hello = (self._client_hello or b"") + data
        try:
            hello = parse_client_hello(buffered)
        except NotClientHello:  # OpenSSL will say what is wrong with it
            self._hand_over(buffered)
            return
        if hello is None:  # more to come, within the handshake timeout
            return
        challenge = None
        assert self._challenges is not None
        if hello.alpn_protocols == ACME_TLS_ALPN and hello.server_name:
            challenge = self._challenges.tlsalpn01_context(hello.server_name)
            if challenge is not None:
                log.info("%s - ACME tls-alpn-01 validation of %s", self._peer, hello.server_name)
        self._hand_over(buffered, challenge)

    def eof_received(self) -> bool:
        """The client gave up before sending anything useful."""
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer; nothing else is owed to a client that never started."""
        self._cancel_timer()
        if self._upgrade is None:  # a TLS handshake task owns the place once it started
            self._release_slot()

    def _take_slot(self) -> ConnectionSlot | None:
        slot, self._slot = self._slot, None
        return slot

    def _release_slot(self) -> None:
        slot = self._take_slot()
        if slot is not None:
            slot.release()

    def _timed_out(self) -> None:
        self._timer = None
        if self._parser is not None:
            log.warning("%s - closing connection: no PROXY protocol header within %gs", self._peer, self._timeout)
        else:  # a client silent from the start, as asyncio's own TLS servers treat it
            log.debug("%s - closing connection: no TLS handshake within %gs", self._peer, self._timeout)
        self._close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    # -- hand-over --------------------------------------------------------------------

    def _hand_over(self, data: bytes, challenge: ssl.SSLContext | None = None) -> None:
        self._cancel_timer()
        self._handed_over = True
        self._client_hello = None
        transport = self._transport
        assert transport is not None
        if self._ssl_context is not None and data[0] == TLS_HANDSHAKE_RECORD:
            self._start_tls(transport, challenge or self._ssl_context, data, challenge is not None)
            return
        listener_app = None
        if self._ssl_context is not None:
            log.info("%s - plain HTTP sent to a TLS port; answering in plain HTTP and closing", self._peer)
            listener_app = self._plain_http_app
        connection = Connection(
            self._context, proxy_header=self._proxy_header, listener_app=listener_app, slot=self._take_slot()
        )
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if data:
            connection.data_received(data)

    def _start_tls(
        self, transport: asyncio.Transport, ssl_context: ssl.SSLContext, data: bytes, challenge: bool
    ) -> None:
        # Reading stops now, so no later segment can reach the SSL protocol before ``data``.
        transport.pause_reading()
        waiting = TLSWaitingRoom()
        task = self._upgrade = self._loop.create_task(self._handshake(transport, ssl_context, waiting, challenge))
        # Shutdown cancels handshakes still in progress with the app tasks.
        self._context.tasks.add(task)
        task.add_done_callback(self._context.tasks.discard)
        self._loop.call_soon(self._feed_when_installed, transport, data, 0)

    def _feed_when_installed(self, transport: asyncio.Transport, data: bytes, turns: int) -> None:
        protocol = transport.get_protocol()
        if protocol is self:
            if turns < _INSTALL_TURNS and not transport.is_closing():
                self._loop.call_soon(self._feed_when_installed, transport, data, turns + 1)
            return
        # start_tls has queued the SSL protocol's connection_made and the transport's
        # resume_reading; calling soon puts these bytes after the first, before any new read.
        self._loop.call_soon(feed_protocol, protocol, data)

    async def _handshake(
        self, transport: asyncio.Transport, ssl_context: ssl.SSLContext, waiting: TLSWaitingRoom, challenge: bool
    ) -> None:
        try:
            await self._upgrade_to_tls(transport, ssl_context, waiting, challenge)
        finally:  # failed, cancelled or a challenge: no Connection took the place
            self._release_slot()

    async def _upgrade_to_tls(
        self, transport: asyncio.Transport, ssl_context: ssl.SSLContext, waiting: TLSWaitingRoom, challenge: bool
    ) -> None:
        metrics = self._context.metrics
        try:
            tls_transport = await self._loop.start_tls(
                transport,
                waiting,
                ssl_context,
                server_side=True,
                ssl_handshake_timeout=self._context.config.tls_handshake_timeout,
            )
        except Exception as exc:  # SSLError, TimeoutError, ConnectionResetError, ...
            # As asyncio's own TLS servers do: a failed handshake is the client's business.
            log.debug("%s - TLS handshake failed: %s", self._peer, exc)
            if metrics is not None:
                metrics.tls_handshake_failures += 1
            transport.abort()
            return
        if metrics is not None:
            metrics.tls_handshakes += 1
        if tls_transport is None or waiting.lost:
            return
        if challenge:
            # RFC 8737 §3: the validation is the handshake itself; nothing follows it.
            tls_transport.close()
            return
        connection = TLSConnection(self._context, proxy_header=self._proxy_header, slot=self._take_slot())
        tls_transport.set_protocol(connection)
        connection.connection_made(tls_transport)
        if waiting.early:
            connection.data_received(b"".join(waiting.early))
        if waiting.eof and not connection.eof_received():
            tls_transport.close()


def _printable(text: str) -> str:
    # The parser quotes client bytes with repr(); this also escapes anything else that is
    # not printable ASCII, so no client byte reaches the log raw (STYLE rule 11).
    return "".join(char if char.isascii() and char.isprintable() else ascii(char)[1:-1] for char in text)


class TLSWaitingRoom(asyncio.BufferedProtocol):
    """The application protocol during ``start_tls``: keeps what arrives before hand-over.

    ``start_tls`` does not call ``connection_made`` (its caller does, with the transport it
    returns), yet the SSL protocol may already deliver data that came with the client's
    Finished message (asyncio's reads once as soon as the handshake ends). It waits here
    until the :class:`TLSConnection` takes over. Buffered, like the TLSConnection, so that
    this read is no 256 KiB allocation either (see gateway/tls_connection.py).
    """

    def __init__(self) -> None:
        self.early: list[bytes] = []
        self.eof = False
        self.lost = False
        self._read_view = read_buffer()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the SSL protocol decrypts: this thread's shared buffer."""
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        """Keep a copy of application data that came with the end of the handshake."""
        self.early.append(bytes(self._read_view[:nbytes]))

    def eof_received(self) -> bool:
        """Remember a half-close for the Connection.

        False: on an SSL transport asyncio closes after EOF whatever this returns, and
        warns when it is True (it cannot keep a TLS connection half-open).
        """
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The client left during the hand-over: no Connection will start."""
        self.lost = True


def feed_protocol(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give ``data`` to ``protocol`` as its transport would (buffered or plain protocol).

    Duck-typed, not ``isinstance``: uvloop's SSL protocol has the methods of
    ``asyncio.BufferedProtocol`` without deriving from it.
    """
    get_buffer = getattr(protocol, "get_buffer", None)
    if get_buffer is None:
        cast(asyncio.Protocol, protocol).data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        buffer = memoryview(buffered.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        buffered.buffer_updated(size)
        view = view[size:]
