"""HTTP/1.1 adapter: bytes <-> a parser (h11 or httptools) <-> stream events.

One request at a time is handed to a stream (stream id 1). The adapter finds and checks
each request head itself (``request_head.py``) and gives a fresh parser that one message
(``http1_parser.py``); bytes of a pipelined request wait here, and reading pauses until the
current response is complete, so the order of answers is the order of requests (RFC 9112
§9.3.2) and memory stays bounded. Per-request state lives in a :class:`RequestCycle`;
read backpressure in ``http1_body.ReadFlow``; upgrades in ``http1_upgrade.py``; response
framing in ``http1_response.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.events import (
    Body,
    ConnectionInfo,
    Data,
    EndBody,
    EndData,
    FileBody,
    InformationalResponse,
    OutboundEvent,
    Request,
    Response,
    StreamAborted,
    StreamClosed,
    Trailers,
    WholeResponse,
)
from gateway.logs import address_label, escape
from gateway.protocols.common import Transport, error_response
from gateway.protocols.http1_body import MAX_DISCARD, ReadFlow
from gateway.protocols.http1_cycle import RequestCycle
from gateway.protocols.http1_parser import STREAM_ID, HTTP1Parser, ParseError, parser_backend
from gateway.protocols.http1_response import Framing, interim_response, serialize_head
from gateway.protocols.http1_upgrade import Tunnel, switch_to_http2
from gateway.protocols.http_rules import expects_continue
from gateway.protocols.request_head import InvalidRequestHead, check_request_head, find_head_end
from gateway.streams.http import HTTPStream
from gateway.streams.websocket import WebSocketStream
from gateway.streams.websocket_handshake import is_websocket_upgrade

if TYPE_CHECKING:
    from gateway.context import ServerContext

log = logging.getLogger("gateway.error")


# --metrics-bind's asgigw_rejections_total reason for each status a request is refused with.
REJECTION_REASONS = {413: "body_too_large", 431: "head_too_large"}

# The request fields the adapter acts on (RFC 9112 §3.2, §6, §9.6; RFC 9110 §7.8, §10.1.1).
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _UPGRADE = range(6)
_ADAPTER_FIELDS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
}

# Seconds a connection that has sent nothing yet may still send its first request once a
# graceful shutdown has begun (see HTTP1Protocol.shutdown).
FIRST_REQUEST_GRACE = 1.0


class HTTP1Protocol:
    """Serves HTTP/1.1 (and 1.0) requests on one connection."""

    def __init__(self, context: ServerContext, transport: Transport, info: ConnectionInfo) -> None:
        self._context = context
        config = self._config = context.config
        self._transport = transport
        self._info = info
        self._new_parser = parser_backend(context.http1_parser)
        # The last request's parser, when it can take the next message (httptools can).
        self._spare_parser: HTTP1Parser | None = None
        self._flow = ReadFlow(transport, config.read_buffer_size, config.body_timeout)
        self._cycle: RequestCycle | None = None
        # Bytes received that no parser has taken yet: a head still arriving, or a
        # pipelined request waiting for the response before it.
        self._pending = b""
        self._reading_head = False
        # The bytes the current head arrived in, and where the head ends in them.
        self._head_buffer = b""
        self._head_end = 0
        self._closing = False
        self._client_eof = False
        self._close_after_response = False
        # False until a request head has been read: see shutdown().
        self._has_served = False
        # After a 101 to a WebSocket upgrade, bytes bypass the parser (RFC 9110 §7.8).
        self._tunnel: Tunnel | None = None
        transport.set_timeout(config.header_timeout, "no request head")

    @property
    def idle(self) -> bool:
        """True between requests: nothing in flight that shutdown would cut off."""
        return self._cycle is None and not self._reading_head and not self._closing

    # -- bytes in -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""
        if self._tunnel is not None:
            self._tunnel.feed(data)
            return
        cycle = self._cycle
        if cycle is not None and not cycle.message_done:
            self._parse(cycle, data)
        elif not self._closing:
            self._pending += data
            if cycle is None:
                self._start_request()

    def feed_eof(self) -> bool:
        """The client half-closed its side; True keeps ours open to finish a response.

        After a complete request the app hears ``http.disconnect`` from ``receive()`` but
        may still answer, and the connection closes after it (see events.InputClosed).
        """
        if self._tunnel is not None:
            self._tunnel.feed_eof()
            return False
        cycle = self._cycle
        if cycle is not None and cycle.message_done and not self._closing:
            self._client_eof = True
            return cycle.stream.input_ended() if cycle.stream is not None else False
        if cycle is not None or self._pending:
            # RFC 9112 §8: a message cut short by the end of the connection is incomplete.
            self.reject(400, "connection closed in the middle of a request")
        else:
            self._close()
        return False

    def _start_request(self) -> None:
        """Check the head waiting in ``_pending`` and start its cycle once it is complete."""
        buffered = self._pending
        config = self._config
        try:
            end = find_head_end(buffered)
            if end < 0:
                if len(buffered) > config.max_header_size:
                    raise InvalidRequestHead(431, "request head too large")
                if not self._reading_head:
                    self._reading_head = True
                    self._transport.set_timeout(config.header_timeout, "request head incomplete")
                return
            if end > config.max_header_size:
                raise InvalidRequestHead(431, "request head too large")
            check_request_head(buffered[:end])
        except InvalidRequestHead as exc:
            self.reject(exc.status, exc.reason)
            return
        self._pending = b""
        self._reading_head = False
        self._head_buffer, self._head_end = buffered, end
        parser, self._spare_parser = self._spare_parser, None
        if parser is None:
            parser = self._new_parser(self, config.max_header_size)
        cycle = self._cycle = RequestCycle(parser)
        self._has_served = True
        self._parse(cycle, buffered)

    def _parse(self, cycle: RequestCycle, data: bytes) -> None:
        try:
            leftover = cycle.parser.feed(data)
        except ParseError as exc:
            self.reject(exc.status, exc.reason)
            return
        if leftover is None or self._closing or self._cycle is not cycle:
            return
        self._pending = leftover
        stream = cycle.stream
        if stream is None or stream.response_complete:
            self._next_cycle()
        elif leftover:
            self._flow.pause_for_pipeline()

    # -- what the parser reports (ParserSink) ----------------------------------------------

    def on_head(self, request: Request) -> None:
        """A request head: choose its stream (HTTP, WebSocket) or switch to HTTP/2."""
        cycle = self._cycle
        if cycle is None or self._closing:
            return
        self._transport.clear_timeout()
        method = request.method
        http10 = cycle.http10 = request.http_version == "1.0"
        # HTTP/1.0 connections close after one response (RFC 9112 §9.3).
        keep_alive = not http10
        cycle.body_allowed = method != b"HEAD"
        upgrade = has_host = body_follows = False
        for name, value in request.headers:
            # One lookup per field instead of six comparisons: a browser sends a dozen fields.
            field = _ADAPTER_FIELDS.get(name)
            if field is None:
                continue
            if field is _HOST:
                has_host = True
            elif field is _CONTENT_LENGTH:
                length = int(value)
                max_body = self._config.max_body_size
                if max_body and length > max_body:
                    self.reject(413, "request body larger than --max-body-size")
                    return
                body_follows = length > 0
            elif field is _TRANSFER_ENCODING:
                body_follows = True
            elif field is _CONNECTION:
                if b"close" in value.lower():
                    keep_alive = False
            elif field is _EXPECT:
                cycle.expect_continue = request.expect_continue = expects_continue(value)
            else:
                upgrade = True
        cycle.keep_alive = keep_alive
        if not has_host and not http10:
            # RFC 9112 §3.2 (h11 enforces it; so does the adapter, for every parser).
            self.reject(400, "Missing mandatory Host header")
            return
        if method == b"CONNECT":
            # RFC 9110 §9.3.6: CONNECT asks for a tunnel, which only a proxy makes; the
            # app would get an authority-form target it cannot serve. HTTP/2 refuses it too.
            self.reject(501, "CONNECT is not supported")
            return
        stream: HTTPStream | WebSocketStream
        if not upgrade:
            stream = HTTPStream(self._context, self, self._info, STREAM_ID)
        elif self._config.http2 and not self._info.tls and not http10 and self._switch_to_http2(request):
            return
        elif is_websocket_upgrade(method, request.headers):
            # Whatever the app answers, this connection will not carry another request.
            cycle.keep_alive = False
            stream = WebSocketStream(self._context, self, self._info, STREAM_ID)
        else:
            stream = HTTPStream(self._context, self, self._info, STREAM_ID)
        cycle.stream = stream
        stream.handle(request)
        if body_follows and not cycle.expect_continue:
            self._flow.wait_for_body()

    def _switch_to_http2(self, request: Request) -> bool:
        # The head came in one piece; what followed it is HTTP/2 (the client preface).
        if switch_to_http2(self._transport, request, self._head_buffer[self._head_end :]):
            self._closing = True  # this adapter is done; the transport stays open
            return True
        return False

    def on_body(self, data: bytes) -> None:
        """A piece of request body."""
        cycle = self._cycle
        if cycle is None or self._closing:
            return
        flow = self._flow
        flow.wait_for_body()
        stream = cycle.stream
        if stream is None or stream.response_complete:
            cycle.discarded += len(data)
            if cycle.discarded > MAX_DISCARD:
                self._close()
            return
        cycle.body_size += len(data)
        max_body = self._config.max_body_size
        if max_body and cycle.body_size > max_body:
            # A chunked body outgrew the limit; the app already runs and gets a disconnect.
            stream.handle(StreamClosed(STREAM_ID))
            if stream.response_started:
                self._close()
            else:
                self.reject(413, "request body larger than --max-body-size")
            return
        flow.buffered += len(data)
        stream.handle(Body(STREAM_ID, data))
        flow.check_buffered()

    def on_message_end(self) -> None:
        """The request is complete (its response may be, too: see ``_parse``)."""
        cycle = self._cycle
        if cycle is None or self._closing:
            return
        cycle.message_done = True
        self._transport.clear_timeout()
        stream = cycle.stream
        if stream is not None and not stream.response_complete:
            stream.handle(EndBody(STREAM_ID))

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has read ``size`` bytes: read from the client again if we had paused."""
        cycle = self._cycle
        self._flow.consumed(size, cycle is not None and not cycle.message_done and self._tunnel is None)

    # -- events out -----------------------------------------------------------------

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's event into bytes for the client."""
        cycle = self._cycle
        if self._closing or cycle is None:
            return
        transport = self._transport
        if type(event) is WholeResponse:
            if self._write_whole(cycle, event):
                # As after a Body event: the next exchange starts once the client took this one.
                await transport.drain()
                if not self._closing and self._cycle is cycle:
                    self._whole_written(cycle)
        elif isinstance(event, Body):
            writer = cycle.writer
            # A body that completes its Content-Length goes out now: the end of the
            # response adds nothing, so waiting for the loop turn only costs a callback.
            transport.write(writer.body(event.data), flush=writer.length_reached)
            if transport.write_paused:
                await transport.drain()
        elif isinstance(event, Data):
            transport.write(event.data)
            if transport.write_paused:
                await transport.drain()
        elif isinstance(event, Response):
            if event.status == 101:
                self._switch_protocols(cycle, event)
                return
            cycle.keep_alive = cycle.writer.start(
                event.status,
                event.headers,
                body_allowed=cycle.body_allowed and event.status not in (204, 304),
                http10=cycle.http10,
                keep_alive=self._may_keep_alive(cycle),
            )
        elif isinstance(event, EndBody):
            self._end_body(cycle, None)
        elif isinstance(event, Trailers):
            self._end_body(cycle, event.headers)
        elif isinstance(event, FileBody):
            before, after, send = cycle.writer.file_body(event.count)
            transport.write(before)
            if send:
                await transport.send_file(event.file, event.offset, event.count)
                transport.write(after)
        elif isinstance(event, InformationalResponse):
            # RFC 9110 §15.2: no 1xx responses to an HTTP/1.0 client.
            if not cycle.http10:
                if event.status == 100:
                    cycle.expect_continue = False
                    self._flow.wait_for_body()
                transport.write(interim_response(event.status, event.headers))
        elif isinstance(event, EndData | StreamAborted):
            self._close()

    def _may_keep_alive(self, cycle: RequestCycle) -> bool:
        # A final answer without a 100 while the client still holds its body back: the
        # next bytes may be that body or a new request, so close (RFC 9110 §10.1.1).
        if cycle.expect_continue and not cycle.message_done:
            return False
        return cycle.keep_alive and not self._close_after_response

    def _write_whole(self, cycle: RequestCycle, response: WholeResponse) -> bool:
        """Write a whole response at once; True when the client must take it before we go on."""
        status = response.status
        writer = cycle.writer
        data, cycle.keep_alive = writer.whole(
            status,
            response.headers,
            response.body,
            body_allowed=cycle.body_allowed and status != 204 and status != 304,
            http10=cycle.http10,
            keep_alive=self._may_keep_alive(cycle),
        )
        transport = self._transport
        transport.write(data, flush=True)
        if transport.write_paused:
            return True
        self._whole_written(cycle)
        return False

    def _whole_written(self, cycle: RequestCycle) -> None:
        missing = cycle.writer.missing
        if missing:
            self._short_body(missing)
        else:
            self._exchange_done(cycle)

    def _switch_protocols(self, cycle: RequestCycle, response: Response) -> None:
        """Send the app's 101: from now on the connection carries WebSocket frames."""
        head = serialize_head(101, response.headers, body_allowed=False, http10=False, keep_alive=True)[0]
        self._transport.write(head)
        cycle.writer.framing = Framing.NONE
        assert cycle.stream is not None
        tunnel = self._tunnel = Tunnel(cycle.stream, self._flow)
        leftover, self._pending = self._pending, b""
        # The parser stopped at the upgrade request; reading resumes for the frames.
        self._flow.end_pipeline_pause()
        if leftover:
            tunnel.feed(leftover)

    def _end_body(self, cycle: RequestCycle, trailers: list[tuple[bytes, bytes]] | None) -> None:
        ending = cycle.writer.end(trailers)
        if ending is None:
            self._short_body(cycle.writer.missing)
            return
        self._transport.write(ending, flush=True)
        self._exchange_done(cycle)

    def _short_body(self, missing: int) -> None:
        # The client must see a truncated body, not a short one that looks complete.
        log.error("response body shorter than its Content-Length (%d bytes missing)", missing)
        self._close()

    def _exchange_done(self, cycle: RequestCycle) -> None:
        """The response is written: close, start the next request, or drop the rest of a body."""
        if not cycle.keep_alive or cycle.writer.framing is Framing.CLOSE or self._client_eof:
            self._close()
        elif cycle.message_done:
            self._next_cycle()
        elif cycle.expect_continue:
            # The client holds its body back for a 100 that will not come: close.
            self._close()
        else:
            # The app answered without reading the whole body: read and drop the rest.
            self._flow.reset()
            self._flow.wait_for_body()

    def _next_cycle(self) -> None:
        cycle = self._cycle
        if cycle is not None and cycle.parser.reuse():
            self._spare_parser = cycle.parser
        self._cycle = None
        self._transport.set_timeout(self._config.keep_alive_timeout, "keep-alive idle")
        self._flow.reset()
        if self._context.shutting_down:
            self._close()
        elif self._pending:
            self._start_request()

    # -- errors, shutdown -------------------------------------------------------------

    def reject(self, status: int, reason: str) -> None:
        """Answer a client error with ``status`` and close (client misbehaviour: no traceback)."""
        log.info("%s - rejected request: %d %s", address_label(self._info.client), status, escape(reason))
        if self._context.metrics is not None and status != 408:  # timeouts: counted by the connection
            self._context.metrics.rejected(REJECTION_REASONS.get(status, "invalid_request"))
        stream = self._cycle.stream if self._cycle is not None else None
        if stream is not None:
            stream.handle(StreamClosed(STREAM_ID))
        if stream is None or not stream.response_started:
            self._transport.write(error_response(status, reason))
        self._close()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            self._transport.close()

    def timeout(self, reason: str) -> None:
        """The connection's timer fired while ``reason`` held."""
        log.debug("%s - closing connection: %s", address_label(self._info.client), reason)
        self._close()

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, otherwise after the current response.

        Idle means between requests of a keep-alive connection (RFC 9112 §9.6 lets us close
        then). A connection whose first request is still on its way, accepted just before
        the listeners closed (a worker being replaced, a SIGTERM under load), gets that
        request answered with ``Connection: close``, within FIRST_REQUEST_GRACE seconds for a
        client that has sent nothing yet: its client could not know it was too late.
        """
        stream = self._cycle.stream if self._cycle is not None else None
        if stream is None and (self._has_served or self._closing) and not self._reading_head:
            self._close()
        elif stream is None:
            self._close_after_response = True
            if not self._reading_head:
                self._transport.set_timeout(min(self._config.header_timeout, FIRST_REQUEST_GRACE), "shutting down")
        else:
            # A WebSocket closes with 1001 and its close handshake ends the connection
            # (RFC 6455 §7.4.1); an HTTP response in flight is finished first.
            self._close_after_response = True
            stream.shutdown()

    def connection_lost(self) -> None:
        """The socket is gone; tell the stream so its app sees ``http.disconnect``."""
        self._closing = True
        stream = self._cycle.stream if self._cycle is not None else None
        if stream is not None:
            stream.handle(StreamClosed(STREAM_ID))

    def cancel_streams(self) -> None:
        """Cancel app tasks still running (graceful timeout passed)."""
        stream = self._cycle.stream if self._cycle is not None else None
        if stream is not None:
            stream.cancel()
