"""One WebSocket: stream events <-> wsproto frames <-> ASGI ``websocket.*`` messages.

The same :class:`WebSocketStream` serves an HTTP/1.1 Upgrade (RFC 6455) and an HTTP/2
extended CONNECT (RFC 8441): the handshake arrives as a ``Request`` event, the answer leaves
as a ``Response`` (101 or 200), and from then on frames travel as ``Data`` events in both
directions, parsed by :class:`InboundFrames` (``websocket_inbound.py``: our fast path and
wsproto's post-handshake connection) and written by the stream. The framing code therefore
exists once. How an accepted WebSocket ends (close handshake, failing, timers) is
:class:`WebSocketClosing`'s, in ``websocket_close.py``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from typing import TYPE_CHECKING, Any

from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionType

from gateway.asgi import (
    ASGIMessageError,
    ClientDisconnected,
    Message,
    Scope,
    body_of,
    build_websocket_scope,
    log_app_exception,
    log_app_problem,
    validate_headers,
    validate_status,
)
from gateway.events import (
    Body,
    ConnectionInfo,
    Data,
    EndBody,
    EndData,
    InboundEvent,
    Request,
    Response,
    StreamAborted,
    StreamClosed,
)
from gateway.streams import websocket_handshake as handshake
from gateway.streams import websocket_masking
from gateway.streams.response_filter import filtered_sender
from gateway.streams.websocket_close import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    CloseState,
    WebSocketClosing,
    log_client,
)
from gateway.streams.websocket_deflate import BoundedPerMessageDeflate, negotiate
from gateway.streams.websocket_inbound import InboundFrames
from gateway.streams.websocket_inbox import Inbox
from gateway.streams.websocket_messages import (
    WebSocketClosedError,
    accept_fields,
    close_fields,
    outbound_payload,
    unmasked_frame,
)
from gateway.streams.websocket_slices import SlicedReader
from gateway.streams.websocket_writer import FrameWriter

websocket_masking.install()

if TYPE_CHECKING:
    from gateway.context import ServerContext
    from gateway.limits import ConcurrencyLimit
    from gateway.streams.http import StreamSender

log = logging.getLogger("gateway.error")


class Phase(enum.Enum):
    """Where the stream is; the ASGI WebSocket spec fixes which messages fit where."""

    HANDSHAKE = "waiting for websocket.accept"
    HTTP_RESPONSE = "sending websocket.http.response.body"
    ACCEPTED = "accepted"  # from here on, WebSocketClosing says how far the closing is
    FINISHED = "finished without a WebSocket"


class WebSocketStream:
    """Runs the ASGI app for one WebSocket and carries frames both ways."""

    # Slots: one of these lives as long as its WebSocket, often idle for hours.
    __slots__ = (
        "_closing",
        "_config",
        "_context",
        "_counted",
        "_deflate",
        "_early_data",
        "_inbound",
        "_inbox",
        "_info",
        "_key",
        "_phase",
        "_reader",
        "_scope",
        "_sender",
        "_started_at",
        "_writer",
        "stream_id",
        "task",
    )

    def __init__(self, context: ServerContext, sender: StreamSender, info: ConnectionInfo, stream_id: int) -> None:
        self._context = context
        # True while this session counts as an open WebSocket for --metrics-bind.
        self._counted = False
        self._config = context.config
        self._sender = sender
        self._info = info
        self.stream_id = stream_id
        self._scope: Scope = {}
        self._key: bytes | None = None
        self._deflate: tuple[BoundedPerMessageDeflate, bytes] | None = None
        self._inbound: InboundFrames | None = None
        self._phase = Phase.HANDSHAKE
        self._early_data: list[bytes] = []
        loop = context.event_loop()
        self._reader = SlicedReader(self._parse_bytes, self._peer_ended, loop)
        self._inbox = Inbox(functools.partial(sender.body_consumed, stream_id), self._config.read_buffer_size, loop)
        self._writer = FrameWriter(sender, stream_id, context.tasks)
        self._closing: WebSocketClosing | None = None
        self.task: asyncio.Task[None] | None = None
        self._started_at = 0.0

    # -- what protocol adapters read --------------------------------------------------

    @property
    def response_started(self) -> bool:
        """True once the handshake has been answered (accepted, rejected or an HTTP response)."""
        return self._phase is not Phase.HANDSHAKE

    @property
    def response_complete(self) -> bool:
        """True once the WebSocket (or the response sent instead) is finished."""
        closing = self._closing
        return self._phase is Phase.FINISHED or (closing is not None and closing.state is CloseState.CLOSED)

    def input_ended(self) -> bool:
        """The client half-closed before the handshake was answered: the stream is over."""
        self.handle(StreamClosed(self.stream_id))
        return False

    # -- inbound events ----------------------------------------------------------------

    def handle(self, event: InboundEvent) -> None:
        """Take one inbound event from the protocol adapter."""
        if isinstance(event, Data):
            self._reader.feed(event.data)
        elif isinstance(event, Request):
            self._start(event)
        elif isinstance(event, EndData):
            self._reader.end()
        elif isinstance(event, StreamClosed):
            self._transport_closed()
        # Body/EndBody: an HTTP/1.1 upgrade GET has no body worth reading.

    def _start(self, request: Request) -> None:
        context = self._context
        loop = context.event_loop()
        self._started_at = loop.time()
        try:
            self._key = handshake.check_handshake(request)
        except handshake.HandshakeError as exc:
            log_client(self._info, self.stream_id, "rejected WebSocket handshake: %d %s", exc.status, exc.reason)
            work = self._send_http_response(exc.status, exc.headers, exc.reason.encode() + b"\n")
        else:
            subprotocols = handshake.requested_subprotocols(request.headers)
            extensions: dict[str, Any] = {"websocket.http.response": {}}
            self._scope = build_websocket_scope(
                request, self._info, context.config.root_path, context.state, extensions, subprotocols
            )
            if self._config.ws_per_message_deflate:
                offers = handshake.requested_extensions(request.headers)
                self._deflate = negotiate(offers, self._config.ws_max_message_size) if offers else None
            limits = context.request_limits
            refusal = None if limits is None else limits.check_rate(self._scope["client"])
            if refusal is not None:  # the handshake is refused like an HTTP request
                work = self._send_http_response(refusal.status, refusal.headers, refusal.body)
            elif limits is not None and limits.concurrency is not None:
                self._inbox.put({"type": "websocket.connect"})
                work = self._run_counted(limits.concurrency)
            else:
                self._inbox.put({"type": "websocket.connect"})
                work = self._run(self._info.listener_app or context.app)
        # Handshake answers get --hsts/--header fields; frames go by the writer, unfiltered.
        secure = self._scope.get("scheme", "wss" if self._info.tls else "ws") == "wss"
        self._sender = filtered_sender(context, self._sender, secure=secure, request=None)
        self.task = context.start_app_task(work)

    def _parse_bytes(self, data: bytes, offset: int) -> int:
        # One loop turn's share of data[offset:] (see SlicedReader); returns where it got to.
        inbound = self._inbound
        if inbound is None:
            # Frames sent right behind the handshake wait for the accept (HTTP/1.1 reading
            # is paused until then, so this stays small).
            if self._phase is Phase.HANDSHAKE:
                self._early_data.append(data[offset:] if offset else data)
            return len(data)
        return inbound.parse(data, offset)

    # -- the app side ---------------------------------------------------------------------

    async def _run_counted(self, concurrency: ConcurrencyLimit) -> None:
        """Run the app in a --limit-concurrency place for the WebSocket's life, or refuse with 503."""
        refusal = concurrency.try_enter(self._scope["client"])
        if refusal is not None:
            await self._send_http_response(refusal.status, refusal.headers, refusal.body)
            return
        try:
            await self._run(self._context.app)
        finally:  # also when the app raised or the task was cancelled
            concurrency.leave()

    async def _run(self, app: Any) -> None:
        try:
            await self._call(app)
        finally:
            metrics = self._context.metrics
            if self._counted and metrics is not None:
                metrics.websockets -= 1

    async def _call(self, app: Any) -> None:
        try:
            await app(self._scope, self.receive, self.send)
        except WebSocketClosedError as exc:
            log.info("%s (stream %d)", exc, self.stream_id)
            return
        except ClientDisconnected:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_app_exception(self._scope, exc)
            if self._context.metrics is not None:
                self._context.metrics.app_exceptions += 1
            await self._app_failed()
            return
        if self._phase is Phase.HANDSHAKE:
            log_app_problem(self._scope, "the app returned without accepting or closing the WebSocket")
            await self._app_failed()
        elif self._phase is Phase.HTTP_RESPONSE:
            log_app_problem(self._scope, "the app returned before finishing websocket.http.response.body")
            await self._app_failed()
        elif self._closing is not None:
            # The app is done with the socket: close it normally for the client.
            await self._closing.close(NORMAL_CLOSURE, "")

    async def _app_failed(self) -> None:
        """500 before the handshake is answered, close 1011 after (ASGI WebSocket spec)."""
        phase = self._phase
        if phase is Phase.HANDSHAKE:
            await self._send_http_response(500, [], b"Internal Server Error")
        elif phase is Phase.HTTP_RESPONSE:
            self._phase = Phase.FINISHED
            await self._sender.stream_send(StreamAborted(self.stream_id))
        elif self._closing is not None:
            await self._closing.close(INTERNAL_ERROR, "")

    async def receive(self) -> Message:
        """The ASGI ``receive`` callable."""
        inbox = self._inbox
        message = inbox.next_message()
        while message is None:
            await inbox.arrival()
            message = inbox.next_message()
        closing = self._closing
        if closing is not None and closing.state is CloseState.REPLYING and message["type"] == "websocket.disconnect":
            # The app asks past the last message before the peer's close: it has answered.
            closing.replies_done()
        return message

    async def send(self, message: Message) -> None:
        """The ASGI ``send`` callable."""
        try:
            message_type = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        phase, closing = self._phase, self._closing
        if (
            message_type == "websocket.send"
            and closing is not None
            and (closing.state is CloseState.OPEN or closing.app_may_send)
        ):
            opcode, payload = outbound_payload(message)
            # Framed here, not by wsproto: after the peer's close wsproto sends no data,
            # but the app's last replies still go out before our close (RFC 6455 §5.5.1).
            deflate = self._deflate
            await self._writer.write(
                deflate[0].message_frame(opcode, payload) if deflate else unmasked_frame(opcode, payload)
            )
        elif closing is not None and closing.app_may_send and message_type == "websocket.close":
            await closing.close(*close_fields(message))
        elif phase is Phase.HANDSHAKE and message_type == "websocket.accept":
            await self._accept(message)
        elif phase is Phase.HANDSHAKE and message_type == "websocket.close":
            # ASGI: a close before accept rejects the handshake with 403.
            await self._send_http_response(403, [], b"")
        elif phase is Phase.HANDSHAKE and message_type == "websocket.http.response.start":
            status = validate_status(message.get("status"))
            headers = validate_headers(message.get("headers", ()))
            self._phase = Phase.HTTP_RESPONSE
            await self._sender.stream_send(Response(self.stream_id, status, headers))
            self._log_access(status)
        elif phase is Phase.HTTP_RESPONSE and message_type == "websocket.http.response.body":
            await self._send_response_body(message)
        elif (closing is not None or phase is Phase.FINISHED) and message_type.startswith("websocket."):
            disconnect = self._inbox.disconnect
            code = disconnect["code"] if disconnect else "pending"
            raise WebSocketClosedError(f"{message_type!r} refused: the WebSocket is closed (code {code})")
        else:
            raise ASGIMessageError(f"unexpected ASGI message {message_type!r} while {phase.value}")

    async def _accept(self, message: Message) -> None:
        subprotocol, extra = accept_fields(message)
        deflate = self._deflate
        headers = handshake.accept_headers(self._key, subprotocol, deflate[1] if deflate else None) + extra
        frames = FrameConnection(ConnectionType.SERVER, [deflate[0]] if deflate else None)
        self._phase = Phase.ACCEPTED
        metrics = self._context.metrics
        if metrics is not None:
            metrics.websockets += 1
            self._counted = True
        closing = self._closing = WebSocketClosing(
            self._config, self._info, self.stream_id, frames, self._inbox, self._writer
        )
        self._inbound = InboundFrames(
            frames,
            closing,
            self._inbox,
            self._writer,
            self._config.ws_max_message_size,
            extension=deflate is not None,
            discarded=functools.partial(self._sender.body_consumed, self.stream_id),
        )
        status = 200 if self._key is None else 101
        try:
            await self._sender.stream_send(Response(self.stream_id, status, headers))
        except Exception:
            # The adapter refused the head (e.g. a bad header from the app): still no
            # WebSocket, so the failure is answered with a 500, not a close frame.
            self._phase, self._inbound, self._closing = Phase.HANDSHAKE, None, None
            raise
        self._log_access(status)
        closing.keep_alive()
        early, self._early_data = self._early_data, []
        for data in early:
            self._reader.feed(data)
        if self._context.shutting_down:
            closing.shutdown()

    async def _send_response_body(self, message: Message) -> None:
        body = body_of(message)
        if body:
            await self._sender.stream_send(Body(self.stream_id, body))
        if not message.get("more_body", False):
            self._phase = Phase.FINISHED
            await self._sender.stream_send(EndBody(self.stream_id))
            self._inbox.close(ABNORMAL_CLOSURE, "")

    async def _send_http_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._phase = Phase.FINISHED
        fields = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await self._sender.stream_send(Response(self.stream_id, status, headers + fields))
        self._log_access(status)
        if body:
            await self._sender.stream_send(Body(self.stream_id, body))
        await self._sender.stream_send(EndBody(self.stream_id))
        self._inbox.close(ABNORMAL_CLOSURE, "")

    # -- how it ends (after the accept, WebSocketClosing decides) ---------------------------

    def _peer_ended(self) -> None:
        # TCP FIN (HTTP/1.1) or END_STREAM (HTTP/2): the peer sends nothing more.
        if self._closing is not None:
            self._closing.peer_ended()
        else:
            self._finish_without_websocket()

    def _transport_closed(self) -> None:
        self._writer.ended = True
        if self._closing is not None:
            self._closing.transport_closed()
        else:
            self._finish_without_websocket()

    def _finish_without_websocket(self) -> None:
        # Gone before the accept (or during the HTTP response sent instead): RFC 6455
        # §7.1.5, no close frame means 1006 for the app.
        self._phase = Phase.FINISHED
        self._inbox.close(ABNORMAL_CLOSURE, "")

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1001; a WebSocket still in its handshake, right after accept."""
        if self._closing is not None:
            self._closing.shutdown()

    def cancel(self) -> None:
        """Stop the app task (graceful timeout passed, or the stream was reset)."""
        self._transport_closed()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _log_access(self, status: int) -> None:
        # One access-log line per handshake answer (101/200 accepted, else the HTTP status).
        formatter = self._context.access_log
        if formatter is not None and self._scope:
            duration = self._context.event_loop().time() - self._started_at
            formatter.log(self._scope, status, 0, duration)
