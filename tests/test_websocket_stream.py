"""WebSocket over HTTP/1.1 without sockets: bytes fed to HTTP1Protocol, wsproto's client as the peer.

Each test runs an event loop, feeds the handshake and frames a real wsproto client state
machine produced, and checks the frames that come back and the ASGI messages the app saw.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from gateway.config import Config
from gateway.context import ServerContext
from gateway.events import ConnectionInfo
from gateway.protocols.http1 import HTTP1Protocol
from gateway.streams import websocket_masking
from gateway.streams.websocket import WebSocketClosedError
from gateway.streams.websocket_deflate import BoundedPerMessageDeflate, negotiate
from tests.fake_transport import FakeTransport

App = Callable[[Any, Any, Any], Awaitable[None]]


class Peer:
    """A wsproto client talking to an HTTP1Protocol through a FakeTransport."""

    def __init__(self, app: App, **config: Any) -> None:
        config.setdefault("ws_ping_interval", 0)
        self.context = ServerContext(config=Config(**config), app=app)
        self.transport = FakeTransport()
        info = ConnectionInfo(client=("127.0.0.1", 50000), server=("127.0.0.1", 8000), tls=False)
        self.protocol = HTTP1Protocol(self.context, self.transport, info)
        self.client = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []

    def send(self, event: Event) -> None:
        self.protocol.feed(self.client.send(event))

    async def settle(self, turns: int = 10) -> list[Event]:
        """Let the server run, then parse what it wrote; return the new client events."""
        for _ in range(turns):
            await asyncio.sleep(0)
        data = bytes(self.transport.output)
        self.transport.output.clear()
        if data:
            self.client.receive_data(data)
        new = list(self.client.events())
        self.events += new
        return new

    async def open(self, target: str = "/chat?room=1", **request: Any) -> AcceptConnection:
        self.send(Request(host="localhost", target=target, **request))
        events = await self.settle()
        assert events and isinstance(events[0], AcceptConnection), events
        return events[0]

    async def finish(self) -> None:
        tasks = list(self.context.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def echo_app(seen: list[Any]) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        seen.append(await receive())
        chosen = scope["subprotocols"][0] if scope["subprotocols"] else None
        await send({"type": "websocket.accept", "subprotocol": chosen, "headers": [(b"x-extra", b"1")]})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            reply = {k: v for k, v in message.items() if k in ("bytes", "text") and v is not None}
            await send({"type": "websocket.send", **reply})

    return app


def test_handshake_scope_echo_and_client_close() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        accept = await peer.open(subprotocols=["chat", "other"], extra_headers=[(b"origin", b"https://a.example")])
        assert accept.subprotocol == "chat"
        assert (b"x-extra", b"1") in accept.extra_headers
        scope, connect = seen[0], seen[1]
        assert connect == {"type": "websocket.connect"}
        assert scope["type"] == "websocket" and scope["scheme"] == "ws" and scope["http_version"] == "1.1"
        assert scope["path"] == "/chat" and scope["raw_path"] == b"/chat" and scope["query_string"] == b"room=1"
        assert scope["subprotocols"] == ["chat", "other"] and scope["root_path"] == ""
        assert scope["client"] == ("127.0.0.1", 50000) and scope["server"] == ("127.0.0.1", 8000)
        assert "websocket.http.response" in scope["extensions"] and "method" not in scope
        assert (b"origin", b"https://a.example") in scope["headers"]
        for message in ("héllo", b"\x00\xff", "", b""):
            peer.send(TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message))
            (reply,) = await peer.settle()
            assert isinstance(reply, (TextMessage, BytesMessage)) and reply.data == message
        peer.send(CloseConnection(code=4001, reason="bye"))
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 4001
        assert peer.transport.closed
        assert seen[-1] == {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}
        await peer.finish()

    run(test)


def test_fragmented_message_is_assembled() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        for piece in ("frag", "ment", "ed ✓"):
            peer.send(TextMessage(data=piece, message_finished=piece.endswith("✓")))
        # A ping between fragments is allowed (RFC 6455 §5.4) and answered at once.
        peer.send(Ping(payload=b"p"))
        for piece in (b"a", b"b", b"c"):
            peer.send(BytesMessage(data=piece, message_finished=piece == b"c"))
        events = await peer.settle()
        data = [e.data for e in events if isinstance(e, (TextMessage, BytesMessage))]
        assert data == ["fragmented ✓", b"abc"]
        assert [e.payload for e in events if type(e).__name__ == "Pong"] == [b"p"]
        assert {"type": "websocket.receive", "bytes": None, "text": "fragmented ✓"} in seen
        await peer.finish()

    run(test)


def test_frames_sent_with_the_handshake_wait_for_accept() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        handshake = peer.client.send(Request(host="localhost", target="/"))
        # The server's accept cannot have been seen yet, so build the frame by hand (masked).
        frame = bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2])
        peer.protocol.feed(handshake + frame)
        events = await peer.settle()
        assert isinstance(events[0], AcceptConnection)
        assert [e.data for e in events[1:]] == ["hi"]
        await peer.finish()

    run(test)


def test_close_before_accept_is_403() -> None:
    async def test() -> None:
        after_close: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.close"})
            # Django Channels waits for websocket.disconnect after a refusal: it must come.
            after_close.append(await receive())

        peer = Peer(app)
        peer.send(Request(host="localhost", target="/"))
        events = await peer.settle()
        assert isinstance(events[0], RejectConnection) and events[0].status_code == 403
        assert peer.transport.closed
        assert after_close == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
        await peer.finish()

    run(test)


def test_http_response_extension_sends_a_full_response() -> None:
    async def test() -> None:
        finished: list[bool] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert "websocket.http.response" in scope["extensions"]
            await receive()
            await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"entry"})
            assert (await receive())["type"] == "websocket.disconnect"
            finished.append(True)

        peer = Peer(app)
        peer.send(Request(host="localhost", target="/"))
        events = await peer.settle()
        assert isinstance(events[0], RejectConnection) and events[0].status_code == 401
        assert (b"x-why", b"token") in events[0].headers
        body = b"".join(e.data for e in events if isinstance(e, RejectData))
        assert body == b"no entry"
        assert finished == [True]
        await peer.finish()

    run(test)


@pytest.mark.parametrize("accept_first", [False, True])
def test_app_exception_is_500_before_accept_and_1011_after(accept_first: bool) -> None:
    async def test() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            if accept_first:
                await send({"type": "websocket.accept"})
            raise RuntimeError("boom")

        peer = Peer(app)
        peer.send(Request(host="localhost", target="/"))
        events = await peer.settle()
        if accept_first:
            assert isinstance(events[0], AcceptConnection)
            assert isinstance(events[1], CloseConnection) and events[1].code == 1011
        else:
            assert isinstance(events[0], RejectConnection) and events[0].status_code == 500
        await peer.finish()

    run(test)


def test_app_returning_closes_1000_and_late_sends_raise() -> None:
    async def test() -> None:
        errors: list[BaseException] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4000, "reason": "done"})
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except WebSocketClosedError as exc:
                errors.append(exc)

        peer = Peer(app)
        await peer.open()
        events = peer.events[1:] + await peer.settle()
        assert isinstance(events[0], CloseConnection) and (events[0].code, events[0].reason) == (4000, "done")
        assert errors and "websocket.send" in str(errors[0]) and isinstance(errors[0], OSError)
        # The client completes the close handshake; then the server closes TCP.
        peer.send(events[0].response())
        await peer.settle()
        assert peer.transport.closed

        async def quiet_app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})

        peer = Peer(quiet_app)
        await peer.open()
        events = peer.events[1:] + await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 1000
        await peer.finish()

    run(test)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"sec-websocket-version", b"8")], 426),
        ([(b"sec-websocket-key", b"dG9vc2hvcnQ=")], 400),
    ],
)
def test_invalid_handshakes_are_refused(headers: list[tuple[bytes, bytes]], status: int) -> None:
    async def test() -> None:
        peer = Peer(echo_app([]))
        lines = {b"host": b"localhost", b"upgrade": b"websocket", b"connection": b"Upgrade"}
        lines |= {b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==", b"sec-websocket-version": b"13"}
        lines |= dict(headers)
        raw = b"GET / HTTP/1.1\r\n" + b"".join(b"%s: %s\r\n" % item for item in lines.items()) + b"\r\n"
        peer.protocol.feed(raw)
        for _ in range(10):
            await asyncio.sleep(0)
        reply = bytes(peer.transport.output)
        assert reply.startswith(b"HTTP/1.1 %d " % status), reply
        assert (b"sec-websocket-version: 13\r\n" in reply) == (status == 426)
        assert peer.transport.closed
        await peer.finish()

    run(test)


def test_oversized_message_closes_1009() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_max_message_size=1024)
        await peer.open()
        peer.send(BytesMessage(data=b"x" * 1024))
        events = await peer.settle()
        assert len(events[0].data) == 1024
        for _ in range(3):
            peer.send(BytesMessage(data=b"y" * 400, message_finished=False))
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == CloseReason.MESSAGE_TOO_BIG
        assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == 1009
        assert peer.transport.closed
        await peer.finish()

    run(test)


def test_compressed_messages_round_trip_and_a_bomb_is_refused() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_max_message_size=64 * 1024)
        accept = await peer.open(extensions=[PerMessageDeflate()])
        assert accept.extensions and accept.extensions[0].name == "permessage-deflate"
        for size in (10, 60_000):
            peer.send(TextMessage(data="z" * size))
            (reply,) = await peer.settle()
            assert reply.data == "z" * size
        # 10 MB of zeros compress to about 10 KB: refused with 1009 once 64 KiB are inflated.
        peer.send(BytesMessage(data=bytes(10_000_000)))
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 1009
        await peer.finish()

    run(test)


def test_inflater_stops_just_past_the_limit() -> None:
    extension = BoundedPerMessageDeflate(1000, client_no_context_takeover=False)
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(bytes(5_000_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert extension.frame_inbound_header(None, Opcode.BINARY, RsvBits(True, False, False), len(bomb)) == RsvBits(  # type: ignore[arg-type]
        True, False, False
    )
    assert extension.frame_inbound_payload_data(None, bomb) is CloseReason.MESSAGE_TOO_BIG  # type: ignore[arg-type]
    assert extension._inflated == 1001  # inflated one byte past the limit, not 5 MB


@pytest.mark.parametrize(
    ("offers", "reply"),
    [
        (["permessage-deflate"], b"permessage-deflate"),
        (["permessage-deflate; client_max_window_bits"], b"permessage-deflate"),
        (
            ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (["permessage-deflate; server_max_window_bits=10"], b"permessage-deflate; server_max_window_bits=10"),
        (["permessage-deflate; server_max_window_bits=8", "permessage-deflate"], b"permessage-deflate"),
        (["permessage-deflate; unknown=1"], None),
        (["permessage-deflate; server_max_window_bits"], None),
        (["permessage-deflate; client_max_window_bits=16"], None),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (["x-webkit-deflate-frame"], None),
    ],
)
def test_deflate_negotiation(offers: list[str], reply: bytes | None) -> None:
    result = negotiate(offers, 1024)
    assert (result[1] if result else None) == reply


def test_dead_peer_is_closed_after_ping_timeout_and_live_peer_kept() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_ping_interval=0.05, ws_ping_timeout=0.05)
        await peer.open()
        # Answer pings for a while: the connection stays.
        for _ in range(4):
            await asyncio.sleep(0.05)
            for event in await peer.settle():
                if isinstance(event, Ping):
                    peer.send(event.response())
        assert not peer.transport.closed
        # Stop answering: the server gives up and the app gets websocket.disconnect.
        await asyncio.sleep(0.25)
        events = await peer.settle()
        assert any(isinstance(e, CloseConnection) and e.code == 1011 for e in events)
        assert peer.transport.closed
        assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        await peer.finish()

    run(test)


def test_reading_pauses_while_the_app_does_not_receive() -> None:
    async def test() -> None:
        release = asyncio.Event()
        received: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await release.wait()
            while (message := await receive())["type"] != "websocket.disconnect":
                received.append(message)

        peer = Peer(app, read_buffer_size=4096)
        await peer.open()
        for _ in range(100):
            peer.send(BytesMessage(data=b"m" * 100))
        await peer.settle()
        assert peer.transport.reading_paused
        release.set()
        await peer.settle(50)
        assert not peer.transport.reading_paused and len(received) == 100
        await peer.finish()

    run(test)


def test_app_send_waits_while_the_transport_is_paused() -> None:
    async def test() -> None:
        sent: list[int] = []
        go = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await go.wait()
            for index in range(3):
                await send({"type": "websocket.send", "bytes": b"d" * 10})
                sent.append(index)

        peer = Peer(app)
        await peer.open()
        peer.transport.set_write_paused(True)
        go.set()
        await peer.settle()
        assert sent == []  # the first send wrote its frame and is waiting for the drain
        peer.transport.set_write_paused(False)
        await peer.settle()
        assert sent == [0, 1, 2] and len([e for e in peer.events if isinstance(e, BytesMessage)]) == 3
        await peer.finish()

    run(test)


def test_shutdown_sends_1001_and_waits_for_the_close_handshake() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        peer.protocol.shutdown()
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 1001
        assert not peer.transport.closed
        peer.send(events[0].response())
        await peer.settle()
        assert peer.transport.closed
        assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == 1001
        await peer.finish()

    run(test)


def test_close_handshake_timeout_drops_a_silent_peer() -> None:
    async def test() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})

        peer = Peer(app, ws_close_timeout=0.05)
        await peer.open()
        await peer.settle()
        assert not peer.transport.closed
        await asyncio.sleep(0.1)
        await peer.settle()
        assert peer.transport.closed
        await peer.finish()

    run(test)


def test_unmasked_client_frame_fails_with_1002() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        peer.protocol.feed(b"\x81\x02hi")  # RFC 6455 §5.1: client frames must be masked
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 1002
        assert peer.transport.closed and seen[-1]["code"] == 1002
        await peer.finish()

    run(test)


def test_client_gone_gives_disconnect_1006() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        peer.protocol.connection_lost()
        await peer.settle()
        assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        await peer.finish()

    run(test)


def _fresh_wsproto_masker() -> Any:
    """wsproto's own pure-Python masker from a fresh copy of its module (install() patches the global)."""
    spec = importlib.util.find_spec("wsproto.frame_protocol")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.XorMaskerSimple


def test_accelerated_masker_matches_wsproto_across_pieces() -> None:
    if websocket_masking.apply_mask is None:
        pytest.skip("websockets' C speedups are not available")
    key = b"\x01\x82\x33\xf4"
    data = bytes(range(256)) * 40
    reference, accelerated = _fresh_wsproto_masker()(key), websocket_masking.AcceleratedMasker(key)
    # Pieces of odd sizes check that the key keeps rotating from one piece to the next.
    start = 0
    for size in (1, 2, 3, 5, 4096, 7, 0, 3000):
        piece = data[start : start + size]
        assert accelerated.process(piece) == bytes(reference.process(bytearray(piece)))
        start += size
    assert start == len(data) - 3126


_ZERO_MASK = b"\x00\x00\x00\x00"  # a legal masking key that leaves the payload readable


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x83" + _ZERO_MASK + b"\xff\xfe\xfd", 1007),  # text that is not UTF-8 (§8.1)
        (b"\x89\xfe\x00\x7e" + _ZERO_MASK + b"p" * 126, 1002),  # control payload > 125 (§5.5)
        (b"\x09\x80" + _ZERO_MASK, 1002),  # fragmented ping (§5.5)
        (b"\x80\x80" + _ZERO_MASK, 1002),  # continuation with nothing to continue (§5.4)
        (b"\x83\x80" + _ZERO_MASK, 1002),  # reserved opcode (§5.2)
        (b"\xc1\x80" + _ZERO_MASK, 1002),  # RSV1 without a negotiated extension (§5.2)
        (b"\x88\x81" + _ZERO_MASK + b"\x03", 1002),  # close payload of one byte (§5.5.1)
        (b"\x88\x82" + _ZERO_MASK + b"\x03\xed", 1002),  # close code 1005 on the wire (§7.4.1)
        (b"\x82\xfe\x00\x05" + _ZERO_MASK + b"12345", 1002),  # 16-bit length for 5 bytes (§5.2)
        (b"\x82\xff" + (200).to_bytes(8, "big") + _ZERO_MASK + bytes(200), 1002),  # 64-bit for 200
        (b"\x82\xff" + (2**63 + 1).to_bytes(8, "big") + _ZERO_MASK, 1002),  # 64-bit length, MSB set
    ],
)
def test_protocol_violations_fail_the_connection(frame: bytes, code: int) -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        peer.protocol.feed(frame)
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == code
        assert peer.transport.closed
        assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == code
        await peer.finish()

    run(test)


def test_access_log_line_per_handshake(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")

    async def test() -> None:
        peer = Peer(echo_app([]), access_log=True)
        await peer.open(target="/chat?room=7")
        await peer.finish()

    run(test)
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert len(lines) == 1 and '"WEBSOCKET /chat?room=7 HTTP/1.1" 101 0' in lines[0], lines


@pytest.mark.parametrize(("code", "valid"), [(1000, True), (1011, True), (4999, True), (1005, False), (2000, False)])
def test_app_close_codes_are_checked(code: int, valid: bool) -> None:
    from gateway.asgi import ASGIMessageError
    from gateway.streams.websocket_messages import close_fields

    if valid:
        assert close_fields({"type": "websocket.close", "code": code}) == (code, "")
    else:
        with pytest.raises(ASGIMessageError, match="close code"):
            close_fields({"type": "websocket.close", "code": code})


def test_one_byte_fragments_are_coalesced() -> None:
    from gateway.streams.websocket_messages import MessageAssembler

    assembler = MessageAssembler(1_000_000)
    text = "ab✓" * 3000
    for char in text[:-1]:
        assert assembler.add(TextMessage(data=char, message_finished=False)) is None
    # Fragments are kept in chunks of 256, not as 9,000 objects.
    assert len(assembler._chunks) == len(text) // 256 and len(assembler._pending) < 256
    assert assembler.add(TextMessage(data=text[-1])) == {"type": "websocket.receive", "bytes": None, "text": text}
    for piece in (b"x", b"", b"yz"):
        assembler.add(BytesMessage(data=piece, message_finished=False))
    assert assembler.add(BytesMessage(data=b"!"))["bytes"] == b"xyz!"  # type: ignore[index]


def test_reading_pauses_on_queued_bytes_too() -> None:
    async def test() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await asyncio.Event().wait()  # never receives

        peer = Peer(app, read_buffer_size=64 * 1024)
        await peer.open()
        # Three messages, far fewer than 16, but more bytes than read_buffer_size.
        for _ in range(3):
            peer.send(BytesMessage(data=b"b" * 40_000))
        await peer.settle()
        assert peer.transport.reading_paused
        await peer.finish()

    run(test)


def test_pongs_to_a_peer_that_does_not_read_do_not_pile_up() -> None:
    async def test() -> None:
        peer = Peer(echo_app([]))
        await peer.open()
        peer.transport.set_write_paused(True)
        peer.send(Ping(payload=b"first"))
        await peer.settle()  # this pong is written; the writer now waits for the drain
        for number in range(1000):
            peer.send(Ping(payload=b"%d" % number))
        await peer.settle()
        peer.transport.set_write_paused(False)
        events = await peer.settle()
        # RFC 6455 §5.5.3: at most a few of the latest pings are answered, not 1,000.
        payloads = [e.payload for e in peer.events[1:]]  # type: ignore[attr-defined]
        assert payloads[0] == b"first" and payloads[-1] == b"999" and len(payloads) <= 17, events
        # A burst the peer reads is answered in full (Autobahn case 2.10).
        for number in range(10):
            peer.send(Ping(payload=b"burst %d" % number))
        events = await peer.settle()
        assert [e.payload for e in events] == [b"burst %d" % number for number in range(10)]
        await peer.finish()

    run(test)


def test_ping_after_the_server_closed_is_not_answered() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        peer.protocol.shutdown()
        (closing,) = await peer.settle()
        assert isinstance(closing, CloseConnection) and closing.code == 1001
        # The client pings and sends a message before answering the close: both are dropped.
        # (Raw frames: wsproto's client refuses to send them once it has seen a close.)
        peer.protocol.feed(b"\x89\x84" + _ZERO_MASK + b"late" + b"\x81\x84" + _ZERO_MASK + b"late")
        peer.send(closing.response())
        assert await peer.settle() == []
        assert peer.transport.closed and seen[-1]["code"] == 1001
        await peer.finish()

    run(test)


def test_accept_with_a_header_that_cannot_be_sent_is_500() -> None:
    async def test() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept", "headers": [(b"x-bad", b"line\r\nbreak")]})

        peer = Peer(app)
        peer.send(Request(host="localhost", target="/"))
        events = await peer.settle()
        assert isinstance(events[0], RejectConnection) and events[0].status_code == 500
        await peer.finish()

    run(test)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_unmasked_frame_matches_wsproto(size: int) -> None:
    from wsproto.frame_protocol import FrameProtocol

    from gateway.streams.websocket_messages import unmasked_frame

    for data in ("é" * (size // 2) + "x" * (size % 2), bytes(size)):
        opcode, payload = (0x1, data.encode()) if isinstance(data, str) else (0x2, data)
        assert unmasked_frame(opcode, payload) == bytes(FrameProtocol(client=False, extensions=[]).send_data(data))


def _masked(first: int, payload: bytes, key: bytes = b"\x0f\xf0\x55\xaa") -> bytes:
    """A client frame built by hand: ``first`` byte (FIN/RSV/opcode), masked payload."""
    length = len(payload)
    header = bytes((first, 0x80 | length)) if length < 126 else bytes((first, 0xFE)) + length.to_bytes(2, "big")
    return header + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def test_fast_path_parses_simple_frames_and_stops_at_anything_else() -> None:
    from gateway.streams.websocket_fastpath import SimpleFrameReader

    if websocket_masking.apply_mask is None:
        pytest.skip("websockets' C speedups are not available")
    ping = _masked(0x89, b"p")
    data = _masked(0x81, "héllo".encode()) + _masked(0x82, b"\x00" * 300) + ping + _masked(0x81, b"later")
    messages: list[Any] = []
    assert data[SimpleFrameReader(1000).feed(data, messages) :] == ping + _masked(0x81, b"later")  # wsproto's
    assert [m["text"] or m["bytes"] for m in messages] == ["héllo", b"\x00" * 300]
    for stop in (_masked(0x81, b"\xff"), _masked(0x01, b"frag"), _masked(0xC1, b"x"), _masked(0x82, b"y" * 1001)):
        # invalid UTF-8, a fragment, RSV1, over the limit: all left to wsproto
        assert SimpleFrameReader(1000).feed(stop, []) == 0
    text = _masked(0x81, b"t" * 200)
    assert SimpleFrameReader(1000).feed(text[:-1], []) == 0  # text spanning reads: wsproto's
    # A binary frame spanning reads is collected, then decoded; what follows is parsed on.
    binary = _masked(0x82, bytes(range(200)))
    reader, messages = SimpleFrameReader(1000), []
    assert reader.feed(binary[:10], messages) == 10 and reader.collecting
    assert reader.feed(binary[10:100], messages) == 90
    rest = binary[100:] + ping
    assert rest[reader.feed(rest, messages) :] == ping and not reader.collecting
    assert messages == [{"type": "websocket.receive", "bytes": bytes(range(200)), "text": None}]
    # Frames that begin at or past ``stop`` wait for the next loop turn; from ``start`` on.
    small = _masked(0x82, b"s")
    assert SimpleFrameReader(1000).feed(small * 3, [], len(small), 2 * len(small)) == 2 * len(small)


def test_frames_split_across_reads_switch_between_fast_path_and_wsproto(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsproto.connection import Connection

    from gateway.streams.websocket_fastpath import SimpleFrameReader

    if websocket_masking.apply_mask is None:
        pytest.skip("websockets' C speedups are not available: no fast path")
    # Which parser decoded what: messages out of the fast path, bytes given to wsproto.
    fast_messages: list[Any] = []
    wsproto_bytes: list[int] = []
    fast_feed, wsproto_receive = SimpleFrameReader.feed, Connection.receive_data

    def counting_feed(
        self: SimpleFrameReader, data: bytes, messages: list[Any], start: int = 0, stop: int | None = None
    ) -> int:
        before = len(messages)
        position = fast_feed(self, data, messages, start, stop)
        fast_messages.extend(messages[before:])
        return position

    def counting_receive(self: Connection, data: bytes | None) -> None:
        wsproto_bytes.append(len(data or b""))
        wsproto_receive(self, data)

    monkeypatch.setattr(SimpleFrameReader, "feed", counting_feed)
    monkeypatch.setattr(Connection, "receive_data", counting_receive)

    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        stream = (
            _masked(0x81, b"one")
            + _masked(0x89, b"ping")
            + _masked(0x01, b"fr")
            + _masked(0x80, b"ag")
            + _masked(0x82, b"\x01" * 200)
            + _masked(0x81, b"two")
        )
        # Every split point: bytes arrive in two reads that cut frames anywhere.
        for cut in range(0, len(stream), 7):
            peer.protocol.feed(stream[:cut])
            peer.protocol.feed(stream[cut:])
        events = await peer.settle(40)
        data = [e.data for e in events if isinstance(e, (TextMessage, BytesMessage))]
        expected = ["one", "frag", b"\x01" * 200, "two"]
        assert data == expected * len(range(0, len(stream), 7))
        await peer.finish()

    run(test)
    # Both parsers ran: whole simple frames by the fast path, the ping and the fragments
    # (and every frame cut across reads that the fast path leaves alone) by wsproto.
    fast_payloads = [message["text"] or message["bytes"] for message in fast_messages]
    assert {"one", "two", b"\x01" * 200} <= set(fast_payloads)
    assert "frag" not in fast_payloads
    assert sum(wsproto_bytes) > 0


def test_frame_being_collected_when_the_server_closes_is_still_consumed_whole() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        frame = _masked(0x82, b"\x07" * 1000)
        peer.protocol.feed(frame[:500])
        peer.protocol.shutdown()
        (closing,) = await peer.settle()
        assert closing.code == 1001  # type: ignore[attr-defined]
        # The rest of the frame, then the client's close: no protocol error, no echo.
        peer.protocol.feed(frame[500:] + _masked(0x88, b"\x03\xe9"))
        assert await peer.settle() == []
        assert peer.transport.closed and seen[-1]["code"] == 1001
        await peer.finish()

    run(test)


def test_shutdown_during_the_handshake_closes_1001_right_after_accept() -> None:
    async def test() -> None:
        accept_now = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await accept_now.wait()
            await send({"type": "websocket.accept"})
            await receive()

        peer = Peer(app)
        peer.send(Request(host="localhost", target="/"))
        await peer.settle()
        peer.context.shutting_down = True
        peer.protocol.shutdown()
        accept_now.set()
        events = await peer.settle()
        assert isinstance(events[0], AcceptConnection)
        assert isinstance(events[1], CloseConnection) and events[1].code == 1001
        await peer.finish()

    run(test)


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_outbound_compression_round_trips_through_wsproto_client(no_context_takeover: bool) -> None:
    async def test() -> None:
        peer = Peer(echo_app([]))
        offer = PerMessageDeflate(server_no_context_takeover=no_context_takeover)
        accept = await peer.open(extensions=[offer])
        sizes: list[int] = []
        # Scrambled text compresses little by itself, but a second copy is all back-references
        # when the context is kept (it fits the server's 4 KiB window).
        chooser = random.Random(7)
        scrambled = "".join(chooser.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(2000))
        for message in (scrambled, scrambled, b"", "repeat me " * 500, bytes(range(256)) * 300):
            raw_before = len(peer.transport.output)
            peer.send(TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message))
            for _ in range(10):
                await asyncio.sleep(0)
            sizes.append(len(peer.transport.output) - raw_before)
            (reply,) = await peer.settle()
            assert reply.data == message  # type: ignore[attr-defined]
        assert accept.extensions and sizes[3] < 200  # 5,000 repetitive bytes went out compressed
        # With context takeover the second identical message costs almost nothing.
        assert (sizes[1] < sizes[0] / 10) is not no_context_takeover, sizes
        await peer.finish()

    run(test)
