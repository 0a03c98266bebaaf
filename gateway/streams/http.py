"""One HTTP request/response exchange: stream events <-> ASGI ``http.*`` messages.

An :class:`HTTPStream` serves HTTP/1.1 and HTTP/2 alike: the protocol adapter feeds it
inbound events through :meth:`HTTPStream.handle` and receives outbound events through the
:class:`StreamSender` it injected. The app runs in one task per stream.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from gateway.asgi import (
    ASGIMessageError,
    ClientDisconnected,
    Message,
    Scope,
    body_of,
    build_http_scope,
    log_app_exception,
    log_app_problem,
    validate_headers,
    validate_status,
)
from gateway.events import (
    Body,
    ConnectionInfo,
    EndBody,
    FileBody,
    InboundEvent,
    InformationalResponse,
    InputClosed,
    OutboundEvent,
    Request,
    Response,
    StreamAborted,
    StreamClosed,
    Trailers,
    WholeResponse,
)
from gateway.logs import escape
from gateway.static import StaticFiles, StaticResponse, open_regular_file
from gateway.streams.http_record import ExchangeRecord
from gateway.streams.http_request_body import RequestBody
from gateway.streams.response_filter import filtered_sender

if TYPE_CHECKING:
    from gateway.context import ServerContext
    from gateway.limits import ConcurrencyLimit

error_log = logging.getLogger("gateway.error")


class StreamSender(Protocol):
    """What a stream needs from its protocol adapter."""

    async def stream_send(self, event: OutboundEvent) -> None:
        """Turn ``event`` into bytes; wait while the peer cannot take more."""

    def body_consumed(self, stream_id: int, size: int) -> None:
        """The app has taken ``size`` bytes of request body: room to read more."""


class ResponseState(enum.Enum):
    """Where the response is; the ASGI HTTP spec fixes the order of the app's messages."""

    WAITING = "waiting for http.response.start"
    BODY = "sending http.response.body"
    TRAILERS = "sending http.response.trailers"
    DONE = "complete"


_RESPONSE_TRAILERS = "http.response.trailers"
_RESPONSE_PATHSEND = "http.response.pathsend"
_NO_BODY_STATUSES = frozenset((204, 304))
# A streamed response body yields to the loop once per 2**_YIELD_SHIFT bytes (256 KiB).
_YIELD_SHIFT = 18
# The ASGI extensions every HTTP scope offers; each scope gets a copy of this dict (its
# values are empty option dicts, which nobody writes to).
_EXTENSIONS: dict[str, Any] = {_RESPONSE_TRAILERS: {}, "http.response.early_hint": {}, _RESPONSE_PATHSEND: {}}


class HTTPStream:
    """Runs the ASGI app for one request and carries its messages both ways."""

    __slots__ = (
        "_client_gone",
        "_context",
        "_disconnected",
        "_expect_continue",
        "_held_head",
        "_info",
        "_input_closed",
        "_method",
        "_record",
        "_request_body",
        "_response_bytes",
        "_scope",
        "_send_body",
        "_sender",
        "_state",
        "_status",
        "_trailers_expected",
        "stream_id",
        "task",
    )

    def __init__(self, context: ServerContext, sender: StreamSender, info: ConnectionInfo, stream_id: int) -> None:
        self._context = context
        self._sender = sender
        self._info = info
        self.stream_id = stream_id
        self._scope: Scope = {}
        self._method = b"GET"
        self._request_body = RequestBody()
        self._disconnected = False
        # The client (not a server-side cancel) ended the exchange: the access line says so.
        self._client_gone = False
        self._input_closed = False
        self._expect_continue = False
        self._state = ResponseState.WAITING
        self._send_body = True
        self._status = 0
        self._trailers_expected = False
        # The app's http.response.start, held until its first body message: the ASGI spec
        # says the response must not start before that, and an app that fails (or sends a
        # bad pathsend) in between still gets a clean 500.
        self._held_head: Response | None = None
        self._response_bytes = 0
        # The access line and metrics of this exchange, when either is on.
        self._record: ExchangeRecord | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def response_started(self) -> bool:
        """True once the response head has been handed to the protocol."""
        return self._state is not ResponseState.WAITING

    @property
    def response_complete(self) -> bool:
        """True once the whole response has been handed to the protocol."""
        return self._state is ResponseState.DONE

    def handle(self, event: InboundEvent) -> None:
        """Take one inbound event from the protocol adapter."""
        if type(event) is Body:
            self._request_body.add(event.data)
        elif type(event) is EndBody:
            self._request_body.complete = True
        elif type(event) is Request:
            self._start(event)
            return
        elif type(event) is StreamClosed:
            self._disconnected = self._client_gone = True
        elif type(event) is InputClosed:
            self._input_closed = True
        self._request_body.wake()

    def _start(self, request: Request) -> None:
        context = self._context
        extensions = _EXTENSIONS.copy()
        scope = self._scope = build_http_scope(request, self._info, context.config.root_path, context.state, extensions)
        self._method = request.method
        self._expect_continue = request.expect_continue
        if context.response_headers is not None or context.compression is not None:
            self._sender = filtered_sender(context, self._sender, secure=scope["scheme"] == "https", request=request)
        if context.access_log is not None or context.metrics is not None:
            self._record = ExchangeRecord(context, scope)
        if (
            context.request_limits is None
            and context.health is None
            and context.static is None
            and self._info.listener_app is None
        ):
            work = self._run(context.app)  # nothing in front of the app: the usual case
        else:
            work = self._routed(request)
        self.task = context.start_app_task(work)

    def _routed(self, request: Request) -> Coroutine[Any, Any, None]:
        """What answers when something stands in front of the app (limits, health, static)."""
        context = self._context
        limits = context.request_limits
        refusal = None if limits is None else limits.check_rate(self._scope["client"])
        health = context.health
        if self._info.listener_app is not None:  # --redirect-http, plain HTTP on a TLS port
            return self._run(self._info.listener_app)
        if refusal is not None:
            return self._answer(refusal.status, refusal.headers, refusal.body)
        if health is not None and self._scope["path"] == health.path:
            return self._run(health)
        if context.static is not None:
            return self._run_static(context.static, request)
        return self._run_app()

    def _run_app(self) -> Coroutine[Any, Any, None]:
        limits = self._context.request_limits
        if limits is None or limits.concurrency is None:
            return self._run(self._context.app)
        return self._run_counted(limits.concurrency)

    async def _run_counted(self, concurrency: ConcurrencyLimit) -> None:
        """Run the app in one of the --limit-concurrency places, or answer 503 without one."""
        refusal = concurrency.try_enter(self._scope["client"])
        if refusal is not None:
            await self._answer(refusal.status, refusal.headers, refusal.body)
            return
        try:
            await self._run(self._context.app)
        finally:  # also when the app raised or the task was cancelled (shutdown, reset)
            concurrency.leave()

    async def _run(self, app: Any) -> None:
        scope = self._scope
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            error_log.debug("client went away while the app was sending (stream %d)", self.stream_id)
            self._log_unfinished()
            return
        except asyncio.CancelledError:
            self._log_unfinished()
            raise
        except Exception as exc:
            log_app_exception(scope, exc)
            if self._context.metrics is not None:
                self._context.metrics.app_exceptions += 1
            if self._disconnected:
                self._log_unfinished()
            await self._fail()
            return
        if self._disconnected:
            # An app that stops once the client has gone (closed, reset its stream) did
            # nothing wrong: an access line at INFO, not an application error.
            self._log_unfinished()
        elif self._state is ResponseState.WAITING and self._input_closed:
            # HTTP/1.1 EOF: the app was told http.disconnect and stopped, as it should.
            self._client_gone = True
            self._log_unfinished()
            self._state = ResponseState.DONE
            await self._sender.stream_send(StreamAborted(self.stream_id))
        elif self._state is ResponseState.WAITING:
            log_app_problem(scope, "the app returned without sending a response")
            await self._fail()
        elif self._state is not ResponseState.DONE:
            log_app_problem(scope, f"the app returned while {self._state.value}")
            await self._fail()

    async def _run_static(self, static: StaticFiles, request: Request) -> None:
        """Answer from a --static folder, or run the app when no file matches."""
        answer = static.respond(request, self._info.client)
        if answer is None:
            await self._run_app()
            return
        # BODY until the end, as for an app: the adapter must not start the next exchange
        # (HTTP/1.1) while the file is still going out.
        self._state = ResponseState.BODY
        self._status = answer.status
        sender = self._sender
        try:
            await sender.stream_send(Response(self.stream_id, answer.status, answer.headers))
            if answer.file is not None:
                await sender.stream_send(FileBody(self.stream_id, answer.file, answer.offset, answer.count))
            elif answer.body and self._method != b"HEAD":
                await sender.stream_send(Body(self.stream_id, answer.body))
            self._state = ResponseState.DONE
            await sender.stream_send(EndBody(self.stream_id))
        except asyncio.CancelledError:
            self._log_unfinished()
            raise
        except OSError as exc:  # the file could not be read to its end
            error_log.warning("static file for %s stopped: %s", escape(self._scope["path"]), exc.strerror or exc)
            self._state = ResponseState.DONE
            await sender.stream_send(StreamAborted(self.stream_id))
            return
        finally:
            if answer.file is not None:
                answer.file.close()
        self._response_bytes = _body_size(answer, self._method)
        self._wake_receiver()
        self._record_response()

    async def _fail(self) -> None:
        """Answer 500 if nothing was sent yet; otherwise abort so no false success is seen."""
        if self._disconnected or self._state is ResponseState.DONE:
            return
        if self._state is ResponseState.WAITING or self._held_head is not None:
            self._held_head = None
            await self._answer(500, [], b"Internal Server Error")
        else:
            self._log_unfinished()
            self._state = ResponseState.DONE
            await self._sender.stream_send(StreamAborted(self.stream_id))

    async def _answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole plain-text response made by the gateway: an error, or a refusal (gateway/limits/)."""
        self._state = ResponseState.DONE
        self._status = status
        fields = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        if self._method == b"HEAD":
            body = b""
        await self._sender.stream_send(WholeResponse(self.stream_id, status, headers + fields, body))
        self._response_bytes = len(body)
        self._wake_receiver()
        self._record_response()

    async def receive(self) -> Message:
        """The ASGI ``receive`` callable."""
        if self._expect_continue:
            # RFC 9110 §10.1.1: 100 Continue is sent only once the app wants the body.
            self._expect_continue = False
            if not self.response_started and not self._request_body.complete:
                await self._sender.stream_send(InformationalResponse(self.stream_id, 100, []))
        body = self._request_body
        while True:
            message = body.next_message(self._consumed)
            if message is not None:
                return message
            if self._disconnected or self._input_closed or self._state is ResponseState.DONE:
                return {"type": "http.disconnect"}
            await body.arrival(self._context.event_loop())

    def _consumed(self, size: int) -> None:
        self._sender.body_consumed(self.stream_id, size)

    async def send(self, message: Message) -> None:
        """The ASGI ``send`` callable."""
        try:
            message_type = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        if self._disconnected:
            raise ClientDisconnected(f"client disconnected; {message_type!r} not sent")
        state = self._state
        if state is ResponseState.BODY and message_type == "http.response.body":
            head = self._held_head
            if head is None or self._trailers_expected or message.get("more_body", False):
                await self._send_body_message(message)
                return
            # The app's only body message, as most responses go: head, body and end leave
            # as one event (inlined: this runs for nearly every response).
            body = body_of(message)  # checked while the head is held: a bad body gets a 500
            self._held_head = None
            if not self._send_body:
                body = b""
            # DONE before the send, as ``_end_body`` does: the adapter may start the next
            # exchange (HTTP/1.1) inside stream_send, and this one must look complete by then.
            self._state = ResponseState.DONE
            try:
                await self._sender.stream_send(WholeResponse(self.stream_id, head.status, head.headers, body))
            except BaseException:
                # Refused (a bad field, a body past its Content-Length) or cancelled while
                # draining: not complete, so ``_fail`` aborts the stream.
                self._state = ResponseState.BODY
                raise
            self._response_bytes = len(body)
            self._wake_receiver()
            if self._record is not None:
                self._record_response()
        elif state is ResponseState.WAITING and message_type == "http.response.start":
            self._start_response(message)
        elif state is ResponseState.WAITING and message_type == "http.response.early_hint":
            links = message.get("links", [])
            if not isinstance(links, list) or not all(isinstance(link, bytes) for link in links):
                raise ASGIMessageError("'links' of http.response.early_hint must be a list of bytes")
            if links:
                headers = [(b"link", link) for link in links]
                await self._sender.stream_send(InformationalResponse(self.stream_id, 103, headers))
        elif state is ResponseState.BODY and message_type == _RESPONSE_PATHSEND:
            await self._send_path(message)
        elif state is ResponseState.TRAILERS and message_type == _RESPONSE_TRAILERS:
            await self._send_trailers(message)
        else:
            raise ASGIMessageError(f"unexpected ASGI message {message_type!r} while {state.value}")

    def _start_response(self, message: Message) -> None:
        status = validate_status(message.get("status"))
        headers = validate_headers(message.get("headers", ()))
        self._trailers_expected = bool(message.get("trailers", False))
        self._status = status
        self._send_body = status not in _NO_BODY_STATUSES and self._method != b"HEAD"
        self._state = ResponseState.BODY
        self._held_head = Response(self.stream_id, status, headers)

    async def _release_head(self) -> None:
        head, self._held_head = self._held_head, None
        if head is not None:
            await self._sender.stream_send(head)

    async def _send_body_message(self, message: Message) -> None:
        body = body_of(message)
        more_body = message.get("more_body", False)
        head = self._held_head
        if head is not None:
            self._held_head = None
            await self._sender.stream_send(head)
        if body and self._send_body:
            sent_before = self._response_bytes
            self._response_bytes += len(body)
            await self._sender.stream_send(Body(self.stream_id, body))
            if more_body and self._response_bytes >> _YIELD_SHIFT != sent_before >> _YIELD_SHIFT:
                # Every 256 KiB, let the loop run even if the transport never paused: one that
                # lost its peer drops writes without pausing, and until connection_lost runs
                # (TLS learns of it a loop turn late) the app would stream its whole body into
                # the void and starve every other connection.
                await asyncio.sleep(0)
        if not more_body:
            await self._end_body()

    async def _send_path(self, message: Message) -> None:
        """ASGI Path Send extension: the body is the file at ``path``, and it ends the body."""
        try:
            file, size = open_regular_file(message.get("path"))
        except ValueError as exc:
            raise ASGIMessageError(str(exc)) from None
        try:
            await self._release_head()
            if self._send_body and size:
                self._response_bytes += size
                await self._sender.stream_send(FileBody(self.stream_id, file, 0, size))
        finally:
            file.close()
        await self._end_body()

    async def _end_body(self) -> None:
        if self._trailers_expected:
            self._state = ResponseState.TRAILERS
            return
        self._state = ResponseState.DONE
        await self._sender.stream_send(EndBody(self.stream_id))
        self._wake_receiver()
        self._record_response()

    async def _send_trailers(self, message: Message) -> None:
        headers = validate_headers(message.get("headers", ()))
        if message.get("more_trailers", False):
            raise ASGIMessageError("'more_trailers' is not supported; send all trailers at once")
        self._state = ResponseState.DONE
        await self._sender.stream_send(Trailers(self.stream_id, headers))
        self._wake_receiver()
        self._record_response()

    def _wake_receiver(self) -> None:
        # A receive() waiting for http.disconnect returns now that the response is complete.
        self._request_body.wake()

    def _record_response(self) -> None:
        """The access-log line and the metrics of a finished response (each when enabled)."""
        if self._record is not None:
            self._record.complete(self._status, self._response_bytes, self._request_body.received, self._client_gone)

    def _log_unfinished(self) -> None:
        # The access line (and metrics) of an exchange that ended before its response was
        # complete: the status sent, or 499 when no head went out.
        record = self._record
        if record is None or self._state is ResponseState.DONE:
            return
        head_sent = self._state is not ResponseState.WAITING and self._held_head is None
        status = self._status if head_sent else None
        record.unfinished(status, self._response_bytes, self._request_body.received, self._client_gone)

    def input_ended(self) -> bool:
        """The client half-closed: the app hears ``http.disconnect`` but may still answer."""
        self.handle(InputClosed(self.stream_id))
        return True

    def shutdown(self) -> None:
        """Graceful shutdown: nothing to do, the response in flight is finished normally."""

    def cancel(self) -> None:
        """Stop the app task (graceful timeout passed, or the stream was reset)."""
        self._disconnected = True
        self._wake_receiver()
        if self.task is not None and not self.task.done():
            self.task.cancel()


def _body_size(answer: StaticResponse, method: bytes) -> int:
    """Body bytes of a static answer, for the access log."""
    if method == b"HEAD":
        return 0
    return answer.count if answer.file is not None else len(answer.body)
