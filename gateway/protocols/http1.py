"""HTTP/1.1 adapter: bytes <-> h11 <-> stream events.

One request at a time is handed to an :class:`HTTPStream` (stream id 1). Pipelined requests
wait in h11's buffer, and reading pauses until the current response is complete, so the
order of answers is the order of requests (RFC 9112 §9.3.2) and memory stays bounded.
The class is built in three layers: this module (heads, the request/response cycle,
keep-alive, shutdown), ``http1_upgrade.py`` (h2c and WebSocket) and ``http1_body.py``
(request bodies and read backpressure).
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import h11

from gateway.events import (
    Body,
    ConnectionInfo,
    Data,
    EndBody,
    EndData,
    FileBody,
    Headers,
    InformationalResponse,
    InputClosed,
    OutboundEvent,
    Request,
    Response,
    StreamAborted,
    StreamClosed,
    Trailers,
)
from gateway.logs import address_label, escape
from gateway.protocols.common import Transport, error_response
from gateway.protocols.http1_body import STREAM_ID
from gateway.protocols.http1_response import Framing, ResponseWriter, interim_response
from gateway.protocols.http1_upgrade import HTTP1Upgrades
from gateway.protocols.request_head import InvalidRequestHead, check_request_head, find_head_end
from gateway.streams.http import HTTPStream
from gateway.streams.websocket import WebSocketStream
from gateway.streams.websocket_handshake import is_websocket_upgrade

if TYPE_CHECKING:
    from gateway.context import ServerContext

log = logging.getLogger("gateway.error")

_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


class Phase(enum.Enum):
    """What the connection is waiting for."""

    IDLE = "waiting for a request"
    HEAD = "reading a request head"
    REQUEST = "serving a request"
    CLOSING = "closing"


class HTTP1Protocol(HTTP1Upgrades):
    """Serves HTTP/1.1 (and 1.0) requests on one connection."""

    def __init__(self, context: ServerContext, transport: Transport, info: ConnectionInfo) -> None:
        self._context = context
        self._config = context.config
        self._transport = transport
        self._info = info
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._config.max_header_size)
        self._phase = Phase.IDLE
        self._stream: HTTPStream | WebSocketStream | None = None
        # After a 101 to a WebSocket upgrade, bytes bypass h11 both ways (RFC 9110 §7.8).
        self._upgraded = False
        self._head_checked = False
        self._body_size = 0
        self._buffered = 0
        self._paused_for_body = False
        self._paused_for_pipeline = False
        self._discarding = 0
        self._http10 = False
        self._keep_alive = True
        self._body_allowed = True
        self._expect_continue = False
        self._client_eof = False
        self._writer = ResponseWriter()
        self._close_after_response = False
        transport.set_timeout(self._config.header_timeout, "no request head")

    @property
    def idle(self) -> bool:
        """True between requests: nothing in flight that shutdown would cut off."""
        return self._phase is Phase.IDLE

    # -- bytes in -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""
        if self._upgraded:
            self._feed_upgraded(data)
            return
        self._h11.receive_data(data)
        self._process()

    def feed_eof(self) -> bool:
        """The client half-closed its side; True keeps ours open to finish a response.

        After a complete request the app hears ``http.disconnect`` from ``receive()`` but
        may still answer, and the connection closes after it (see events.InputClosed).
        """
        if self._upgraded:
            assert self._stream is not None
            self._stream.handle(EndData(STREAM_ID))
            return False
        if self._phase is Phase.REQUEST and self._h11.their_state is h11.DONE:
            self._client_eof = True
            stream = self._stream
            if isinstance(stream, HTTPStream):
                stream.handle(InputClosed(STREAM_ID))
                return True
            if stream is not None:
                stream.handle(StreamClosed(STREAM_ID))
            return False
        self._h11.receive_data(b"")
        self._process()
        return False

    def _process(self) -> None:
        h11_connection = self._h11
        while self._phase is not Phase.CLOSING:
            if not self._head_checked and h11_connection.their_state is h11.IDLE:
                if not self._check_head():
                    return
            try:
                event = h11_connection.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(exc.error_status_hint, str(exc))
                return
            event_type = type(event)
            if event_type is h11.Data:
                self._on_data(event.data)  # type: ignore[union-attr]
            elif event_type is h11.Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif event_type is h11.EndOfMessage:
                self._on_end_of_request()
                if self._phase is Phase.REQUEST and self._h11 is h11_connection:
                    # The response is pending: h11 would only say NEED_DATA or PAUSED.
                    if h11_connection.trailing_data[0]:
                        self._paused_for_pipeline = True
                        self._transport.pause_reading()
                    return
            elif event is h11.NEED_DATA:
                return
            elif event is h11.PAUSED:
                # A pipelined request waits until the current response is complete.
                self._paused_for_pipeline = True
                self._transport.pause_reading()
                return
            else:  # h11.ConnectionClosed
                self._on_client_gone()
                return

    def _check_head(self) -> bool:
        """Apply the smuggling defences to the next head before h11 parses it."""
        buffered = self._h11.trailing_data[0]
        if not buffered:
            return False
        try:
            end = find_head_end(buffered)
            if end < 0:
                if len(buffered) > self._config.max_header_size:
                    raise InvalidRequestHead(431, "request head too large")
                if self._phase is Phase.IDLE:
                    self._phase = Phase.HEAD
                    self._transport.set_timeout(self._config.header_timeout, "request head incomplete")
                return False
            if end > self._config.max_header_size:
                raise InvalidRequestHead(431, "request head too large")
            check_request_head(buffered[:end])
        except InvalidRequestHead as exc:
            self._reject(exc.status, exc.reason)
            return False
        self._head_checked = True
        return True

    def _on_request(self, event: h11.Request) -> None:
        self._transport.clear_timeout()
        self._phase = Phase.REQUEST
        http_version = _HTTP_VERSIONS[event.http_version]
        self._http10 = http_version == "1.0"
        # HTTP/1.0 connections close after one response (RFC 9112 §9.3).
        self._keep_alive = not self._http10
        self._body_allowed = event.method != b"HEAD"
        self._expect_continue = False
        # raw_items() is h11's public, fast view; ASGI wants lower-case names.
        headers = [(name.lower(), value) for name, value in event.headers.raw_items()]
        max_body = self._config.max_body_size
        upgrade = False
        for name, value in headers:
            if name == b"content-length":
                if max_body and int(value) > max_body:
                    self._reject(413, "request body larger than --max-body-size")
                    return
            elif name == b"connection":
                if b"close" in value.lower():
                    self._keep_alive = False
            elif name == b"expect":
                self._expect_continue = value.lower() == b"100-continue"
            elif name == b"upgrade":
                upgrade = True
        self._body_size = 0
        if upgrade and self._config.http2 and not self._info.tls and not self._http10:
            if self._switch_to_http2(event, headers):
                return
        stream: HTTPStream | WebSocketStream
        if upgrade and is_websocket_upgrade(event.method, headers):
            # Whatever the app answers, this connection will not carry another request.
            self._keep_alive = False
            stream = WebSocketStream(self._context, self, self._info, STREAM_ID)
        else:
            stream = HTTPStream(self._context, self, self._info, STREAM_ID)
        self._stream = stream
        stream.handle(Request(STREAM_ID, event.method, event.target, http_version, headers))
        if self._h11.their_state is h11.SEND_BODY and not self._expect_continue:
            self._wait_for_body()

    def _on_client_gone(self) -> None:
        if self._stream is not None:
            self._stream.handle(StreamClosed(STREAM_ID))
        self._close()

    def _detach(self) -> None:
        """Upgraded to HTTP/2: this adapter is done, the transport stays open."""
        self._phase = Phase.CLOSING

    # -- events out -----------------------------------------------------------------

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's event into bytes for the client."""
        if self._phase is Phase.CLOSING:
            return
        transport = self._transport
        event_type = type(event)
        if event_type is Data:
            transport.write(event.data)  # type: ignore[union-attr]
            if transport.write_paused:
                await transport.drain()
        elif event_type is Body:
            transport.write(self._writer.body(event.data))  # type: ignore[union-attr]
            if transport.write_paused:
                await transport.drain()
        elif event_type is FileBody:
            await self._send_file(event)  # type: ignore[arg-type]
        elif event_type is Response and event.status == 101:  # type: ignore[union-attr]
            self._switch_protocols(event.headers)  # type: ignore[union-attr]
        elif event_type is EndData:
            self._close()
        elif event_type is Response:
            # A final answer without a 100 while the client still holds its body back: the
            # next bytes may be that body or a new request, so close (RFC 9110 §10.1.1).
            if self._expect_continue and self._h11.their_state is not h11.DONE:
                self._keep_alive = False
            self._keep_alive = self._writer.start(
                event.status,  # type: ignore[union-attr]
                event.headers,  # type: ignore[union-attr]
                body_allowed=self._body_allowed and event.status not in (204, 304),  # type: ignore[union-attr]
                http10=self._http10,
                keep_alive=self._keep_alive and not self._close_after_response,
            )
        elif event_type is EndBody or event_type is Trailers:
            self._end_body(event.headers if event_type is Trailers else None)  # type: ignore[union-attr]
        elif event_type is InformationalResponse:
            # RFC 9110 §15.2: no 1xx responses to an HTTP/1.0 client.
            if not self._http10:
                if event.status == 100:  # type: ignore[union-attr]
                    self._expect_continue = False
                    self._wait_for_body()
                transport.write(interim_response(event.status, event.headers))  # type: ignore[union-attr]
        elif event_type is StreamAborted:
            self._close()

    async def _send_file(self, event: FileBody) -> None:
        before, after, send = self._writer.file_body(event.count)
        transport = self._transport
        transport.write(before)
        if send:
            await transport.send_file(event.file, event.offset, event.count)
            transport.write(after)

    def _end_body(self, trailers: Headers | None) -> None:
        ending = self._writer.end(trailers)
        if ending is None:
            # The client must see a truncated body, not a short one that looks complete.
            log.error("response body shorter than its Content-Length (%d bytes missing)", self._writer.missing)
            self._close()
            return
        self._transport.write(ending, flush=True)
        self._on_response_complete()

    def _on_response_complete(self) -> None:
        if not self._keep_alive or self._writer.framing is Framing.CLOSE or self._client_eof:
            self._close()
        elif self._h11.their_state is h11.DONE:
            self._next_cycle()
        elif self._expect_continue:
            # The client holds its body back for a 100 that will not come: close.
            self._close()
        else:
            # The app answered without reading the whole body: read and drop the rest.
            self._discarding = 0
            self._buffered = 0
            if self._paused_for_body:
                self._paused_for_body = False
                self._transport.resume_reading()
            self._wait_for_body()

    def _next_cycle(self) -> None:
        # Responses are written here, not through h11, so h11's own side never advances;
        # a fresh parser per request (about a microsecond) takes the bytes already received.
        leftover = self._h11.trailing_data[0]
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._config.max_header_size)
        self._stream = None
        self._head_checked = False
        self._phase = Phase.IDLE
        self._buffered = 0
        self._transport.set_timeout(self._config.keep_alive_timeout, "keep-alive idle")
        # Both pauses end with the exchange, including one for a body the app never read.
        if self._paused_for_pipeline or self._paused_for_body:
            self._paused_for_pipeline = self._paused_for_body = False
            self._transport.resume_reading()
        if self._context.shutting_down:
            self._close()
            return
        if leftover:
            self._h11.receive_data(leftover)
            self._process()

    # -- errors, shutdown -------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        """Answer a client error with ``status`` and close (client misbehaviour: no traceback)."""
        log.info(
            "%s - rejected request: %d %s",
            address_label(self._info.client),
            status,
            escape(reason),
        )
        if self._stream is not None:
            self._stream.handle(StreamClosed(STREAM_ID))
        if self._stream is None or not self._stream.response_started:
            self._transport.write(error_response(status, reason))
        self._close()

    def _close(self) -> None:
        if self._phase is not Phase.CLOSING:
            self._phase = Phase.CLOSING
            self._transport.close()

    def timeout(self, reason: str) -> None:
        """The connection's timer fired while ``reason`` held."""
        log.debug("%s - closing connection: %s", address_label(self._info.client), reason)
        self._close()

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, otherwise after the current response."""
        if self._phase in (Phase.IDLE, Phase.HEAD):
            self._close()
        elif isinstance(self._stream, WebSocketStream):
            # Close 1001 and let the close handshake end the connection (RFC 6455 §7.4.1).
            self._close_after_response = True
            self._stream.shutdown()
        else:
            self._close_after_response = True

    def connection_lost(self) -> None:
        """The socket is gone; tell the stream so its app sees ``http.disconnect``."""
        self._phase = Phase.CLOSING
        if self._stream is not None:
            self._stream.handle(StreamClosed(STREAM_ID))

    def cancel_streams(self) -> None:
        """Cancel app tasks still running (graceful timeout passed)."""
        if self._stream is not None:
            self._stream.cancel()
