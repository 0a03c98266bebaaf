"""HTTP/2 adapter: bytes <-> our HTTP/2 state machine <-> stream events (RFC 9113).

Each HTTP/2 stream gets its own :class:`HTTPStream`, the same one HTTP/1.1 uses, and its
app runs in its own task. Inbound flow control follows the app: WINDOW_UPDATEs are sent only
as the app reads the body, so a stream buffers at most its window. Outbound DATA follows the
peer's windows and frame size, and ``stream_send(Body)`` waits for window, at most
``h2_send_timeout`` seconds. Flood accounting lives in :mod:`http2_limits`, header checks in
:mod:`http2_headers`.
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
    OutboundEvent,
    Request,
    StreamClosed,
)
from gateway.logs import address_label, escape
from gateway.protocols.common import Stream, Transport
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_closing import ConnectionClosing
from gateway.protocols.http2_data_sender import DataSender
from gateway.protocols.http2_events import (
    ClientGoAway,
    ControlFrame,
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from gateway.protocols.http2_frames import ConnectionFault, ErrorCode
from gateway.protocols.http2_headers import (
    BadRequest,
    MalformedRequest,
    check_trailers,
    request_from_headers,
)
from gateway.protocols.http2_inbound_flow import InboundFlow
from gateway.protocols.http2_limits import FloodGuard
from gateway.protocols.http2_responses import ResponseWriter
from gateway.protocols.http2_settings import start_connection
from gateway.protocols.http2_stream_record import StreamGone
from gateway.protocols.http2_stream_table import StreamState, StreamTable
from gateway.streams.http import HTTPStream
from gateway.streams.websocket import WebSocketStream
from gateway.streams.websocket_handshake import is_websocket_connect

if TYPE_CHECKING:
    from gateway.context import ServerContext

log = logging.getLogger("gateway.error")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# Seconds an idle connection stays open after the client's GOAWAY (see _on_client_goaway).
CLIENT_GOAWAY_LINGER = 1.0


class HTTP2Protocol:
    """Serves HTTP/2 on one connection: TLS with ALPN "h2", prior knowledge, or h2c Upgrade."""

    def __init__(
        self,
        context: ServerContext,
        transport: Transport,
        info: ConnectionInfo,
        *,
        upgrade: tuple[Request, bytes] | None = None,
    ) -> None:
        self._context = context
        self._config = config = context.config
        self._transport = transport
        self._info = info
        self._flood = FloodGuard(config.h2_max_resets, config.h2_max_control_frames)
        # No new streams: graceful shutdown, or the client sent GOAWAY (RFC 9113 §6.8).
        self._draining = False
        self._shutting_down = False
        self._paused_reply_bytes = 0
        self._body_timeout = BodyTimeout(config.body_timeout, self._body_stalled)
        self._connection = connection = start_connection(config, None if upgrade is None else upgrade[1])
        self._inbound = InboundFlow(connection, self._body_timeout)
        self._table = table = StreamTable(self._inbound, self._body_timeout, self._on_idle)
        sender = DataSender(
            connection,
            transport,
            table,
            self._flood,
            batch_limit=config.write_buffer_size,
            send_timeout=config.h2_send_timeout,
            on_window_shut=self._window_shut,
            on_peer_stalled=self._peer_stalled,
        )
        self._writer = ResponseWriter(connection, transport, table, sender, self._body_timeout)
        self._closing = ConnectionClosing(
            connection, transport, table, self._body_timeout, info, config.h2_send_timeout
        )
        self._start(upgrade)

    def _start(self, upgrade: tuple[Request, bytes] | None) -> None:
        self._flush()
        if upgrade is not None:
            # RFC 7540 §3.2: the upgrading request is stream 1, half-closed (remote).
            request = upgrade[0]
            self._closing.last_stream_id = 1
            self._open_stream(request)
            self._end_of_request(1)
        else:
            self._transport.set_timeout(self._config.keep_alive_timeout, "HTTP/2 connection idle")
        if self._context.shutting_down:
            self.shutdown()

    @property
    def idle(self) -> bool:
        """True when no stream is in flight."""
        return not self._table

    # -- bytes in -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""
        if self._table.closing:
            return
        try:
            events = self._connection.receive_data(data)
        except ConnectionFault as exc:
            self._closing.connection_error(exc.code, f"protocol error: {exc}")
            return
        for event in events:
            try:
                self._dispatch(event)
            except StreamGone:
                # The peer reset this stream later in the same batch: whatever we meant to
                # send on it is moot.
                pass
            if self._table.closing:
                return
        output = self._connection.data_to_send()
        if output:
            transport = self._transport
            if transport.write_paused:
                # Replies (PING and SETTINGS ACKs, RST_STREAMs) to a peer that does not read
                # its socket pile up in our buffer; bound them (RFC 9113 §10.5).
                self._paused_reply_bytes += len(output)
                if self._paused_reply_bytes > self._config.write_buffer_size:
                    self._log_client_problem(0, "floods control frames while not reading; dropped")
                    self._closing.end_streams(abort=True)
                    return
            else:
                self._paused_reply_bytes = 0
            transport.write(output)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            self._on_data(event)
        elif isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, StreamEnded):
            self._end_of_request(event.stream_id)
        elif isinstance(event, WindowUpdated):
            self._on_window_update(event.stream_id)
        elif isinstance(event, StreamReset):
            self._on_reset(event)
        elif isinstance(event, TrailersReceived):
            self._on_trailers(event)
        elif isinstance(event, ControlFrame):
            self._count_control_frame()
            if event.settings:
                # A new SETTINGS_INITIAL_WINDOW_SIZE changes every stream's window (§6.9.2).
                for state in self._table.values():
                    state.wake()
        else:
            self._on_client_goaway(event)

    def _count_control_frame(self) -> None:
        if self._flood.control_frame():
            self._calm_down("control frame flood")

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        self._closing.last_stream_id = stream_id
        if self._draining or len(self._table) >= self._config.h2_max_concurrent_streams:
            self._reset(stream_id, ErrorCode.REFUSED_STREAM)
            return
        try:
            request = request_from_headers(stream_id, list(event.headers or ()), connect_protocol=True)
        except MalformedRequest as exc:
            self._log_client_problem(stream_id, f"malformed request: {exc}")
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        except BadRequest as exc:
            self._answer_error(stream_id, 400, str(exc))
            return
        if request.protocol is not None and not is_websocket_connect(request):
            self._answer_error(stream_id, 501, f"unsupported :protocol {request.protocol!r}")
            return
        max_body = self._config.max_body_size
        for name, value in request.headers:
            if name == b"content-length" and max_body and value.isdigit() and int(value) > max_body:
                self._answer_error(stream_id, 413, "request body larger than --max-body-size")
                return
        self._open_stream(request)
        if not event.stream_ended and request.protocol is None:
            expect = any(name == b"expect" and value.lower() == b"100-continue" for name, value in request.headers)
            self._body_timeout.watch(stream_id, expect_continue=expect)

    def _open_stream(self, request: Request) -> None:
        self._flood.request_opened()
        if self._context.metrics is not None:
            self._context.metrics.h2_streams += 1
        if not self._table:
            self._transport.clear_timeout()
        stream: Stream
        if request.protocol is not None:
            stream = WebSocketStream(self._context, self, self._info, request.stream_id)
        else:
            stream = HTTPStream(self._context, self, self._info, request.stream_id)
        self._table.add(
            request.stream_id,
            StreamState(stream, head=request.method == b"HEAD", websocket=request.protocol is not None),
        )
        stream.handle(request)

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        data = event.data or b""
        flow_length = event.flow_controlled_length or 0
        state = self._table.get(stream_id)
        if not data and not event.stream_ended:
            # Empty DATA frames cost the peer nothing and us a wakeup (CVE-2019-9518).
            self._count_control_frame()
        if state is None or state.stream.response_complete:
            # Nobody will read this: hand the window back at once.
            self._inbound.acknowledge(flow_length, stream_id)
            return
        if flow_length > len(data):
            self._inbound.acknowledge(flow_length - len(data), stream_id)  # padding
        if state.websocket:
            # RFC 8441 §5: DATA frames carry the WebSocket's bytes; no body size limit.
            if data:
                state.unread += len(data)
                state.stream.handle(Data(stream_id, data))
            return
        state.received += len(data)
        max_body = self._config.max_body_size
        if max_body and state.received > max_body:
            self._inbound.acknowledge(len(data), stream_id)  # dropped unread
            state.stream.handle(StreamClosed(stream_id))
            if state.stream.response_started:
                self._reset(stream_id, ErrorCode.CANCEL)
            else:
                self._answer_error(stream_id, 413, "request body larger than --max-body-size")
            return
        if data:
            state.unread += len(data)
            state.stream.handle(Body(stream_id, data))

    def _end_of_request(self, stream_id: int) -> None:
        state = self._table.get(stream_id)
        if state is not None:
            state.remote_done = True
            self._body_timeout.forget(stream_id)
            # RFC 8441 §5: END_STREAM on an extended CONNECT is the TCP FIN of a WebSocket.
            state.stream.handle(EndData(stream_id) if state.websocket else EndBody(stream_id))

    def _on_trailers(self, event: TrailersReceived) -> None:
        # ASGI has no request trailers; they are checked and dropped.
        stream_id = event.stream_id
        assert stream_id is not None
        try:
            check_trailers(list(event.headers or ()))
        except MalformedRequest as exc:
            self._log_client_problem(stream_id, f"malformed trailers: {exc}")
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)

    def _on_window_update(self, stream_id: int | None) -> None:
        self._count_control_frame()
        if not stream_id:
            for state in self._table.values():
                state.wake()
        else:
            target = self._table.get(stream_id)
            if target is not None:
                target.wake()

    def _on_reset(self, event: StreamReset) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        if self._context.metrics is not None:
            self._context.metrics.h2_resets += 1
        state = self._table.drop(stream_id)
        if state is not None:
            # The app's work for a reset stream is wasted: stop it (Rapid Reset). A WebSocket
            # app instead gets websocket.disconnect (1006), as when an HTTP/1.1 client drops
            # its socket, so it can clean up (e.g. leave its Channels groups).
            state.stream.handle(StreamClosed(stream_id))
            if not state.websocket:
                state.stream.cancel()
            state.wake()
            self._table.done()
        if self._flood.reset():
            self._calm_down("too many stream resets")

    def _body_stalled(self, stream_id: int) -> bool:
        """``--body-timeout`` passed on a stream: reset it, unless we are holding it up."""
        state = self._table.get(stream_id)
        if state is None or state.remote_done or self._table.closing:
            return True
        try:
            window = self._connection.remote_flow_control_window(stream_id)
        except StreamGone:  # already closed: nothing to time
            return True
        if state.unread or window <= 0:
            return False  # the app has not read what we hold, or the window is shut
        self._log_client_problem(stream_id, f"request body stalled for {self._config.body_timeout:g}s; stream reset")
        state.stream.handle(StreamClosed(stream_id))
        # CANCEL, "the stream is no longer needed" (RFC 9113 §7), as a stream error (§5.4.2):
        # a slow client breaks no protocol rule (not PROTOCOL_ERROR), the app has seen the
        # request so a retry is not known to be safe (not REFUSED_STREAM, §8.7), and no
        # complete response went out (NO_ERROR is for that, §8.1).
        self._reset(stream_id, ErrorCode.CANCEL)
        self._flush()
        return True

    def _on_idle(self) -> None:
        """The last open stream has ended."""
        if self._draining:
            self._closing.close_gracefully()
        else:
            self._transport.set_timeout(self._config.keep_alive_timeout, "HTTP/2 connection idle")

    def _flush(self) -> None:
        output = self._connection.data_to_send()
        if output:
            self._transport.write(output)

    # -- errors, shutdown -------------------------------------------------------------

    def _reset(self, stream_id: int, error_code: ErrorCode) -> None:
        """Reset a stream ourselves; counted, since a peer can provoke these (MadeYouReset)."""
        if self._context.metrics is not None:
            self._context.metrics.h2_resets += 1
        state = self._table.drop(stream_id)
        self._connection.reset_stream(stream_id, error_code)
        if state is not None:
            self._table.done()
        if self._flood.reset():
            self._calm_down("too many provoked stream resets")

    def _calm_down(self, reason: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §5.4.1) and close: the peer is abusive."""
        self._closing.connection_error(ErrorCode.ENHANCE_YOUR_CALM, reason)

    def _on_client_goaway(self, goaway: ClientGoAway) -> None:
        """The client is done with this connection (RFC 9113 §6.8).

        Its GOAWAY stops new streams; the ones it has opened are still answered, with PINGs
        and WINDOW_UPDATEs served meanwhile, and the connection closes after the last one.
        With none open, the close waits CLIENT_GOAWAY_LINGER seconds (or for the client to
        close first, as it normally does): a PING sent right behind the GOAWAY is answered
        rather than meeting a closed socket, which some clients read as an error (h2spec 7/1
        did, now and then, under load). A GOAWAY with an error code says the client saw a
        connection error; the same holds.
        """
        if goaway.error_code:
            log.info(
                "%s - HTTP/2 client sent GOAWAY with error code %d",
                address_label(self._info.client),
                goaway.error_code,
            )
        self._draining = True
        if not self._table:
            self._transport.set_timeout(CLIENT_GOAWAY_LINGER, "client sent GOAWAY")

    def timeout(self, reason: str) -> None:
        """The connection's timer fired while idle: GOAWAY NO_ERROR and close."""
        if self._table.closing:
            return
        log.debug("%s - closing connection: %s", address_label(self._info.client), reason)
        self._closing.close_gracefully()

    def feed_eof(self) -> bool:
        """The client half-closed; HTTP/2 has no use for a half-open connection."""
        return False

    def shutdown(self) -> None:
        """Graceful shutdown: finish the open streams, refuse new ones, then GOAWAY and close.

        No GOAWAY goes out while streams are open: clients built on the python h2 library
        (httpx/httpcore among them) fail every open stream on any GOAWAY, even those at or
        below its last stream id. Instead a new stream gets RST_STREAM REFUSED_STREAM, which
        RFC 9113 §8.7 guarantees was not processed (safe to retry), and GOAWAY NO_ERROR with
        the last stream id goes out when the last stream ends. See docs/http2.md.
        """
        if self._table.closing or self._shutting_down:
            return
        self._shutting_down = self._draining = True
        for state in self._table.values():
            state.stream.shutdown()  # a WebSocket closes with 1001; a request just finishes
        if not self._table:
            self._closing.close_gracefully()

    def connection_lost(self) -> None:
        """The socket is gone: every open stream's app sees ``http.disconnect``."""
        self._closing.lost()

    def cancel_streams(self) -> None:
        """The graceful timeout passed: reset the streams still open, then GOAWAY."""
        self._closing.cut_off()

    # -- what streams ask ---------------------------------------------------------------

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn a stream's event into frames for the client."""
        await self._writer.stream_send(event)

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has read ``size`` bytes: let the client send that much more (§6.9)."""
        state = self._table.get(stream_id)
        if state is not None and not self._table.closing:
            state.unread -= size
            self._inbound.consumed(stream_id, size)
            self._flush()

    def _answer_error(self, stream_id: int, status: int, reason: str) -> None:
        self._log_client_problem(stream_id, f"rejected request: {status} {reason}")
        self._writer.answer_error(stream_id, status, reason)

    def _window_shut(self, stream_id: int) -> None:
        """``--h2-send-timeout`` passed with the stream's window shut: reset it with CANCEL."""
        self._log_client_problem(stream_id, "flow-control window stayed closed; stream reset")
        state = self._table.get(stream_id)
        if state is not None:
            state.stream.handle(StreamClosed(stream_id))
        self._writer.reset(stream_id, ErrorCode.CANCEL)
        self._flush()

    def _peer_stalled(self, stream_id: int) -> None:
        self._log_client_problem(stream_id, "peer stopped reading; connection dropped")
        self._closing.end_streams(abort=True)

    def _log_client_problem(self, stream_id: int, problem: str) -> None:
        log.info("%s - HTTP/2 stream %d: %s", address_label(self._info.client), stream_id, escape(problem))
