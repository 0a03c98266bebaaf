"""HTTP/2 adapter: bytes <-> h2 <-> stream events (RFC 9113).

Each HTTP/2 stream gets its own :class:`HTTPStream`, the same one HTTP/1.1 uses, and its
app runs in its own task. Inbound flow control follows the app: WINDOW_UPDATEs are sent only
as the app reads the body, so a stream buffers at most its window. Outbound DATA follows the
peer's windows and frame size, and ``stream_send(Body)`` waits for window, at most
``h2_send_timeout`` seconds. Flood accounting lives in :mod:`http2_limits`, header checks in
:mod:`http2_headers`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.exceptions import InvalidDataError
from hyperframe.frame import GoAwayFrame

from gateway.events import (
    Body,
    ConnectionInfo,
    Data,
    EndBody,
    EndData,
    Request,
    StreamClosed,
)
from gateway.logs import address_label, escape
from gateway.protocols.common import Transport
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_headers import (
    BadRequest,
    MalformedRequest,
    check_trailers,
    request_from_headers,
)
from gateway.protocols.http2_limits import FloodGuard
from gateway.protocols.http2_outbound import HTTP2Sender, StreamState
from gateway.protocols.http2_settings import start_h2
from gateway.streams.http import HTTPStream
from gateway.streams.websocket import WebSocketStream
from gateway.streams.websocket_handshake import is_websocket_connect

if TYPE_CHECKING:
    from gateway.context import ServerContext

log = logging.getLogger("gateway.error")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class HTTP2Protocol(HTTP2Sender):
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
        self._streams: dict[int, StreamState] = {}
        self._flood = FloodGuard(config.h2_max_resets, config.h2_max_control_frames)
        self._closing = False
        self._goaway_sent = False
        self._last_stream_id = 0
        self._paused_reply_bytes = 0
        self._abort_timer: asyncio.TimerHandle | None = None
        self._body_timeout = BodyTimeout(config.body_timeout, self._body_stalled)
        self._h2 = start_h2(config, None if upgrade is None else upgrade[1])
        self._start(upgrade)

    def _start(self, upgrade: tuple[Request, bytes] | None) -> None:
        self._flush()
        if upgrade is not None:
            # RFC 7540 §3.2: the upgrading request is stream 1, half-closed (remote).
            request = upgrade[0]
            self._last_stream_id = 1
            self._open_stream(request)
            self._end_of_request(1)
        else:
            self._transport.set_timeout(self._config.keep_alive_timeout, "HTTP/2 connection idle")
        if self._context.shutting_down:
            self.shutdown()

    @property
    def idle(self) -> bool:
        """True when no stream is in flight."""
        return not self._streams

    # -- bytes in -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""
        if self._closing:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the matching error code (RFC 9113 §5.4.1), except
            # for a bad preface, which it rejects before any state changes (§3.4).
            if self._h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                self._h2.close_connection(error_code=ErrorCodes.PROTOCOL_ERROR)
            cause = exc.__cause__
            code = None
            if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
                code = ErrorCodes.COMPRESSION_ERROR  # §4.3: an undecodable header block
            elif isinstance(cause, InvalidDataError) and str(cause).startswith("SETTINGS ack"):
                code = ErrorCodes.FRAME_SIZE_ERROR  # §6.5: a SETTINGS ACK with a payload
            if code is not None:
                # h2 says PROTOCOL_ERROR for both; replace its GOAWAY with the RFC's code.
                self._h2.data_to_send()
                self._write_goaway(code, self._h2.highest_inbound_stream_id)
            self._fatal(f"protocol error: {exc}")
            return
        for event in events:
            try:
                self._dispatch(event)
            except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
                # The peer reset this stream later in the same batch, and h2 may already have
                # forgotten it: whatever we meant to send on it is moot.
                pass
            if self._closing:
                return
        self._check_header_backlog()
        output = self._h2.data_to_send()
        if output:
            transport = self._transport
            if transport.write_paused:
                # Replies (PING and SETTINGS ACKs, RST_STREAMs) to a peer that does not read
                # its socket pile up in our buffer; bound them (RFC 9113 §10.5).
                self._paused_reply_bytes += len(output)
                if self._paused_reply_bytes > self._config.write_buffer_size:
                    self._log_client_problem(0, "floods control frames while not reading; dropped")
                    self._fatal_quiet(abort=True)
                    return
            else:
                self._paused_reply_bytes = 0
            transport.write(output)

    def _dispatch(self, event: h2.events.Event) -> None:
        event_type = type(event)
        if event_type is h2.events.DataReceived:
            self._on_data(event)  # type: ignore[arg-type]
        elif event_type is h2.events.RequestReceived:
            self._on_request(event)  # type: ignore[arg-type]
        elif event_type is h2.events.StreamEnded:
            self._end_of_request(event.stream_id)  # type: ignore[attr-defined]
        elif event_type is h2.events.WindowUpdated:
            self._on_window_update(event.stream_id)  # type: ignore[attr-defined]
        elif event_type is h2.events.StreamReset:
            self._on_reset(event)  # type: ignore[arg-type]
        elif event_type is h2.events.TrailersReceived:
            self._on_trailers(event)  # type: ignore[arg-type]
        elif event_type in (h2.events.PingReceived, h2.events.PriorityUpdated, h2.events.UnknownFrameReceived):
            self._count_control_frame()
        elif event_type is h2.events.RemoteSettingsChanged:
            self._count_control_frame()
            # A new SETTINGS_INITIAL_WINDOW_SIZE changes every stream's window (§6.9.2).
            for state in self._streams.values():
                state.wake()
        elif event_type is h2.events.ConnectionTerminated:
            self._on_goaway()

    def _count_control_frame(self) -> None:
        if self._flood.control_frame():
            self._calm_down("control frame flood")

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        self._last_stream_id = stream_id
        if self._goaway_sent or len(self._streams) >= self._config.h2_max_concurrent_streams:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        try:
            request = request_from_headers(stream_id, list(event.headers or ()), connect_protocol=True)
        except MalformedRequest as exc:
            self._log_client_problem(stream_id, f"malformed request: {exc}")
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
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
        if event.stream_ended is None and request.protocol is None:
            expect = any(name == b"expect" and value.lower() == b"100-continue" for name, value in request.headers)
            self._body_timeout.watch(stream_id, expect_continue=expect)

    def _open_stream(self, request: Request) -> None:
        self._flood.request_opened()
        if not self._streams:
            self._transport.clear_timeout()
        stream: HTTPStream | WebSocketStream
        if request.protocol is not None:
            stream = WebSocketStream(self._context, self, self._info, request.stream_id)
        else:
            stream = HTTPStream(self._context, self, self._info, request.stream_id)
        self._streams[request.stream_id] = StreamState(stream, head=request.method == b"HEAD")
        stream.handle(request)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        data = event.data or b""
        flow_length = event.flow_controlled_length or 0
        state = self._streams.get(stream_id)
        if not data and not event.stream_ended:
            # Empty DATA frames cost the peer nothing and us a wakeup (CVE-2019-9518).
            self._count_control_frame()
        if state is None or state.stream.response_complete:
            # Nobody will read this: hand the window back at once.
            self._acknowledge(flow_length, stream_id)
            return
        if flow_length > len(data):
            self._acknowledge(flow_length - len(data), stream_id)  # padding
        if type(state.stream) is WebSocketStream:
            # RFC 8441 §5: DATA frames carry the WebSocket's bytes; no body size limit.
            if data:
                state.unread += len(data)
                state.stream.handle(Data(stream_id, data))
            return
        state.received += len(data)
        max_body = self._config.max_body_size
        if max_body and state.received > max_body:
            self._acknowledge(len(data), stream_id)  # dropped unread
            state.stream.handle(StreamClosed(stream_id))
            if state.stream.response_started:
                self._reset(stream_id, ErrorCodes.CANCEL)
            else:
                self._answer_error(stream_id, 413, "request body larger than --max-body-size")
            return
        if data:
            state.unread += len(data)
            state.stream.handle(Body(stream_id, data))

    def _end_of_request(self, stream_id: int) -> None:
        state = self._streams.get(stream_id)
        if state is not None:
            state.remote_done = True
            self._body_timeout.forget(stream_id)
            # RFC 8441 §5: END_STREAM on an extended CONNECT is the TCP FIN of a WebSocket.
            state.stream.handle(EndData(stream_id) if type(state.stream) is WebSocketStream else EndBody(stream_id))

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        # ASGI has no request trailers; they are checked and dropped.
        stream_id = event.stream_id
        assert stream_id is not None
        try:
            check_trailers(list(event.headers or ()))
        except MalformedRequest as exc:
            self._log_client_problem(stream_id, f"malformed trailers: {exc}")
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def _on_window_update(self, stream_id: int | None) -> None:
        self._count_control_frame()
        if not stream_id:
            for state in self._streams.values():
                state.wake()
        else:
            target = self._streams.get(stream_id)
            if target is not None:
                target.wake()

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        state = self._drop(stream_id)
        if state is not None:
            # The app's work for a reset stream is wasted: stop it (Rapid Reset). A WebSocket
            # app instead gets websocket.disconnect (1006), as when an HTTP/1.1 client drops
            # its socket, so it can clean up (e.g. leave its Channels groups).
            state.stream.handle(StreamClosed(stream_id))
            if type(state.stream) is not WebSocketStream:
                state.stream.cancel()
            state.wake()
            self._stream_done()
        if self._flood.reset():
            self._calm_down("too many stream resets")

    def _on_goaway(self) -> None:
        # h2 accepts nothing more on this connection once the peer has sent GOAWAY.
        for stream_id, state in list(self._streams.items()):
            state.stream.handle(StreamClosed(stream_id))
            state.wake()
        self._streams.clear()
        self._close()

    def _check_header_backlog(self) -> None:
        # A header block spread over CONTINUATION frames is buffered by h2 until its end
        # (RFC 9113 §6.10); cap its compressed size, not only h2's frame count.
        backlog = getattr(self._h2.incoming_buffer, "_headers_buffer", None)
        if backlog and sum(len(frame.data) for frame in backlog) > self._config.h2_max_header_list_size:
            self._h2.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM)
            self._fatal("header block larger than --h2-max-header-list-size")

    def _body_stalled(self, stream_id: int) -> bool:
        """``--body-timeout`` passed on a stream: reset it, unless we are holding it up."""
        state = self._streams.get(stream_id)
        if state is None or state.remote_done or self._closing:
            return True
        try:
            window = self._h2.remote_flow_control_window(stream_id)
        except h2.exceptions.ProtocolError:  # h2 has already closed it: nothing to time
            return True
        if state.unread or window <= 0:
            return False  # the app has not read what we hold, or the window is shut
        self._log_client_problem(stream_id, f"request body stalled for {self._config.body_timeout:g}s; stream reset")
        state.stream.handle(StreamClosed(stream_id))
        # CANCEL, "the stream is no longer needed" (RFC 9113 §7), as a stream error (§5.4.2):
        # a slow client breaks no protocol rule (not PROTOCOL_ERROR), the app has seen the
        # request so a retry is not known to be safe (not REFUSED_STREAM, §8.7), and no
        # complete response went out (NO_ERROR is for that, §8.1).
        self._reset(stream_id, ErrorCodes.CANCEL)
        self._flush()
        return True

    def _forget(self, stream_id: int) -> None:
        if self._drop(stream_id) is not None:
            self._stream_done()

    def _stream_done(self) -> None:
        if self._streams or self._closing:
            return
        if self._goaway_sent:
            self._close()
        else:
            self._transport.set_timeout(self._config.keep_alive_timeout, "HTTP/2 connection idle")

    def _flush(self) -> None:
        output = self._h2.data_to_send()
        if output:
            self._transport.write(output)

    # -- errors, shutdown -------------------------------------------------------------

    def _reset(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Reset a stream ourselves; counted, since a peer can provoke these (MadeYouReset)."""
        self._forget(stream_id)
        self._h2.reset_stream(stream_id, error_code)
        if self._flood.reset():
            self._calm_down("too many provoked stream resets")

    def _calm_down(self, reason: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §5.4.1) and close: the peer is abusive."""
        if self._closing:
            return
        self._h2.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self._last_stream_id)
        self._fatal(reason)

    def _fatal(self, reason: str) -> None:
        """A connection error: send what h2 queued (the GOAWAY), end every stream, close."""
        if self._closing:
            return
        log.info("%s - HTTP/2 connection closed: %s", address_label(self._info.client), escape(reason))
        output = self._h2.data_to_send()
        if output:
            self._transport.write(output)
        self._fatal_quiet()

    def _fatal_quiet(self, *, abort: bool = False) -> None:
        for stream_id, state in list(self._streams.items()):
            state.stream.handle(StreamClosed(stream_id))
            state.stream.cancel()
            state.wake()
        self._streams.clear()
        if abort and not self._closing:
            self._closing = True
            self._transport.abort()
        self._close()

    def _close(self) -> None:
        self._body_timeout.close()
        if not self._closing:
            self._flush()  # e.g. the END_STREAM of the last response before a GOAWAY close
            self._closing = True
            self._transport.close()
            # close() waits for queued bytes to be read; a peer that never reads them must
            # not keep the connection (and its memory) forever.
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(self._config.h2_send_timeout, self._transport.abort)

    def _send_goaway(self, error_code: ErrorCodes) -> None:
        # Written by hand: once h2 itself sends GOAWAY it refuses to send anything else,
        # and streams below the last id must still be answered (RFC 9113 §6.8).
        self._flush()
        self._write_goaway(error_code, self._last_stream_id)
        self._goaway_sent = True

    def _write_goaway(self, error_code: ErrorCodes, last_stream_id: int) -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error_code
        self._transport.write(frame.serialize())

    def timeout(self, reason: str) -> None:
        """The connection's timer fired while idle: GOAWAY NO_ERROR and close."""
        if self._closing:
            return
        log.debug("%s - closing connection: %s", address_label(self._info.client), reason)
        self._send_goaway(ErrorCodes.NO_ERROR)
        self._close()

    def feed_eof(self) -> bool:
        """The client half-closed; HTTP/2 has no use for a half-open connection."""
        return False

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY with the last stream id; close once streams finish."""
        if self._closing or self._goaway_sent:
            return
        self._send_goaway(ErrorCodes.NO_ERROR)
        for state in self._streams.values():
            if type(state.stream) is WebSocketStream:
                state.stream.shutdown()  # close 1001, then the close handshake ends the stream
        if not self._streams:
            self._close()

    def connection_lost(self) -> None:
        """The socket is gone: every open stream's app sees ``http.disconnect``."""
        self._closing = True
        self._body_timeout.close()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        for stream_id, state in list(self._streams.items()):
            state.stream.handle(StreamClosed(stream_id))
            state.wake()
        self._streams.clear()

    def cancel_streams(self) -> None:
        """Cancel app tasks still running (graceful timeout passed)."""
        for state in list(self._streams.values()):
            state.stream.cancel()
            state.wake()
