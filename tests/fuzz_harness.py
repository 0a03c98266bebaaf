"""Drive a protocol adapter with arbitrary bytes and check what must hold for any input.

Shared by the property tests (tests/test_fuzz_*.py), the long-running fuzzers (fuzz/) and
the replay of their crashing inputs (tests/test_fuzz_regressions.py). It only uses the
adapters' public seams: ``feed()``/``feed_eof()`` in, the injected transport's writes and
pause/close calls out, and the ASGI messages the app sees. Like the real connection it
stops feeding while the adapter has paused reading, so a well-behaved adapter's memory is
what it chose to hold.

What every input must satisfy (:class:`Outcome.check`):

- no exception escapes ``feed()``/``feed_eof()``, none reaches the event loop's exception
  handler, and the gateway logs nothing at ERROR (our app never fails, so an ERROR line is
  the gateway's own failure);
- bytes the adapter holds (measured by walking what it references) stay under a bound
  computed from the configured limits and the largest single read;
- the adapter never stays stuck with reading paused while nothing is in flight.

Protocol-specific checks (well-formed output, a defined answer) are in the test modules,
which parse the output with a real peer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.context import ServerContext
from gateway.events import ConnectionInfo, Request
from gateway.protocols.common import ProtocolAdapter
from tests.fake_transport import FakeTransport

CLIENT = ("127.0.0.1", 50999)
SERVER = ("127.0.0.1", 8443)
Message = dict[str, Any]

# Small limits so that generated inputs reach them within a few kilobytes.
FUZZ_LIMITS: dict[str, Any] = {
    "access_log": False,
    "max_header_size": 4096,
    "read_buffer_size": 4096,
    "write_buffer_size": 16384,
    "max_body_size": 65536,
    "ws_max_message_size": 8192,
    "ws_ping_interval": 0,
    "h2_max_concurrent_streams": 8,
    "h2_max_header_list_size": 4096,
    "h2_max_resets": 20,
    "h2_max_control_frames": 50,
}
# Objects a walk from the adapter must not enter: shared or not owned by the connection.
_NOT_OWNED = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    types.CoroutineType,
    asyncio.AbstractEventLoop,
    asyncio.Future,
    asyncio.Handle,
    logging.Logger,
    Config,
    ServerContext,
    FakeTransport,
)
# Allowance for fixed-size state: the HPACK tables (4 KiB each by default, RFC 7541 §4.2),
# h2's and h11's small constant buffers, a WebSocket's inflater window.
_FIXED_SLACK = 48 * 1024


class FuzzTransport(FakeTransport):
    """A FakeTransport that also records an h2c upgrade instead of refusing it."""

    def __init__(self) -> None:
        super().__init__()
        self.upgraded_to_http2 = False

    def upgrade_to_http2(self, request: Request, settings: bytes, leftover: bytes) -> None:
        self.upgraded_to_http2 = True
        self.close()


def held_bytes(root: object, limit: int = 50_000) -> int:
    """Bytes in ``bytes``/``bytearray``/``memoryview`` objects reachable from ``root``.

    A walk through ``gc.get_referents`` that stays inside what the connection owns (see
    ``_NOT_OWNED``), so it measures buffers wherever a reshaped adapter keeps them.
    """
    seen = {id(root)}
    pending = [root]
    total = 0
    visited = 0
    while pending and visited < limit:
        item = pending.pop()
        visited += 1
        if isinstance(item, (bytes, bytearray)):
            total += len(item)
            continue
        if isinstance(item, memoryview):
            total += item.nbytes
            continue
        if isinstance(item, (str, int, float, _NOT_OWNED)):
            continue
        for child in gc.get_referents(item):
            if id(child) not in seen:
                seen.add(id(child))
                pending.append(child)
    return total


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Outcome:
    """What one run produced: the bytes written, the app's messages, and every failure seen."""

    output: bytes = b""
    closed: bool = False
    aborted: bool = False
    upgraded_to_http2: bool = False
    scopes: list[Message] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    max_held: int = 0
    bound: int = 0

    def check(self) -> None:
        """Raise AssertionError naming every invariant the run broke."""
        assert not self.failures, self.failures
        assert self.max_held <= self.bound, f"adapter held {self.max_held} bytes, bound {self.bound}"


class EchoApp:
    """An ASGI app that reads every request body and answers ``method path:body``; echoes WebSocket messages.

    The HTTP answer has a Content-Length; the WebSocket one accepts (with compression if
    offered) and sends each message back. It records what it receives, so runs compare.
    """

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.outcome.scopes.append(
            {
                "type": scope["type"],
                "method": scope.get("method"),
                "http_version": scope.get("http_version"),
                "path": scope.get("path"),
                "query_string": scope.get("query_string"),
                "headers": list(scope.get("headers", ())),
            }
        )
        if scope["type"] == "websocket":
            await self._websocket(receive, send)
        else:
            await self._http(scope, receive, send)

    async def _http(self, scope: Message, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            self.outcome.received.append(message)
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        answer = b"%s %s:%s" % (scope["method"].encode(), scope["raw_path"], body[:64])
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _websocket(self, receive: Any, send: Any) -> None:
        message = await receive()
        self.outcome.received.append(message)
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            self.outcome.received.append(message)
            if message["type"] != "websocket.receive":
                return
            reply = {key: message[key] for key in ("bytes", "text") if message.get(key) is not None}
            await send({"type": "websocket.send", **reply})


AdapterFactory = Callable[[ServerContext, FakeTransport, ConnectionInfo], ProtocolAdapter]


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def exchange(
    make_adapter: AdapterFactory,
    chunks: list[bytes],
    *,
    eof: bool = False,
    tls: bool = False,
    bound: Callable[[Config, int], int],
    turns: int = 8,
    **config: Any,
) -> Outcome:
    """Feed ``chunks`` one read at a time (the app runs in between), then optionally EOF.

    ``bound(config, largest_read)`` is the most the adapter may hold at any point.
    """
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: outcome.failures.append(f"loop: {context.get('message')}"))
    errors = _ErrorRecords()
    gateway_log = logging.getLogger("gateway")
    gateway_log.addHandler(errors)
    settings = {**FUZZ_LIMITS, **config}
    context = ServerContext(config=Config(**settings), app=EchoApp(outcome))
    transport = FuzzTransport()
    info = ConnectionInfo(client=CLIENT, server=SERVER, tls=tls)
    largest = max((len(chunk) for chunk in chunks), default=0)
    outcome.bound = bound(context.config, largest) + _FIXED_SLACK
    adapter: ProtocolAdapter | None = None
    try:
        adapter = make_adapter(context, transport, info)
        for chunk in chunks:
            if transport.closed:
                break
            if transport.reading_paused:
                # The app has not read what it was given yet: let it, as the loop would.
                await _turns(turns)
                if transport.reading_paused:
                    break  # the rest stays in the kernel's buffer, as on a real socket
            adapter.feed(chunk)
            await _turns(turns)
            outcome.max_held = max(outcome.max_held, held_bytes(adapter))
        if eof and not transport.closed and not transport.reading_paused:
            adapter.feed_eof()
        await _turns(turns * 2)
        outcome.max_held = max(outcome.max_held, held_bytes(adapter))
        if transport.reading_paused and not transport.closed and all(task.done() for task in context.tasks):
            outcome.failures.append("reading paused with no request in flight")
    except Exception as exc:  # the invariant under test: nothing escapes an adapter
        outcome.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        outcome.output = transport.take()
        outcome.closed = transport.closed
        outcome.aborted = transport.aborted
        outcome.upgraded_to_http2 = transport.upgraded_to_http2
        try:
            if adapter is not None:
                adapter.connection_lost()
                adapter.cancel_streams()
        except Exception as exc:
            outcome.failures.append(f"at connection_lost: {type(exc).__name__}: {exc}")
        tasks = list(context.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _turns(2)
        gateway_log.removeHandler(errors)
        outcome.failures += [f"ERROR logged: {line}" for line in errors.lines]
    return outcome


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted, duplicates kept)."""
    if not data:
        return []
    points = sorted(cut % (len(data) + 1) for cut in cuts)
    pieces = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    # A connection never feeds an empty read (b"" would mean EOF to the parsers).
    return [piece for piece in pieces if piece]


def chunks_from_fuzz_input(data: bytes) -> tuple[list[bytes], bool]:
    """Decode a fuzzer's input: byte 0 says how many cuts follow (low 3 bits) and EOF (bit 3).

    Each cut is two bytes (big-endian offset); the rest is the byte stream. The same
    decoding runs in the fuzzers and in the replay of their regression files.
    """
    if not data:
        return [], False
    count = data[0] & 0x07
    eof = bool(data[0] & 0x08)
    header = 1 + 2 * count
    cuts = [int.from_bytes(data[1 + 2 * index : 3 + 2 * index], "big") for index in range(count)]
    return split(data[header:], cuts), eof


# -- the adapters, built as the connection builds them --------------------------------


def http1_adapter(context: ServerContext, transport: FakeTransport, info: ConnectionInfo) -> ProtocolAdapter:
    """The HTTP/1.1 adapter (also the WebSocket one after an Upgrade)."""
    from gateway.protocols.http1 import HTTP1Protocol

    return HTTP1Protocol(context, transport, info)


def http2_adapter(context: ServerContext, transport: FakeTransport, info: ConnectionInfo) -> ProtocolAdapter:
    """The HTTP/2 adapter, as on a TLS connection that chose "h2" by ALPN."""
    from gateway.protocols.http2 import HTTP2Protocol

    return HTTP2Protocol(context, transport, info)


def http1_bound(config: Config, largest_read: int) -> int:
    """A request head being read, the body the app has not taken yet, and one read."""
    return config.max_header_size + config.read_buffer_size + largest_read


def http2_bound(config: Config, largest_read: int) -> int:
    """A header block being collected, every open stream's window of body, and one read."""
    windows = config.h2_max_concurrent_streams * config.h2_initial_window_size
    return config.h2_max_header_list_size + windows + largest_read


def websocket_bound(config: Config, largest_read: int) -> int:
    """A message being assembled, the bytes the app has not taken yet, and one read."""
    return config.ws_max_message_size + config.read_buffer_size + config.max_header_size + largest_read
