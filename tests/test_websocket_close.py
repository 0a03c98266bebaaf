"""WebSocket close ordering without sockets: the app's replies go out before the close frame.

RFC 6455 §5.5.1 lets an endpoint keep sending after it received a close frame, until it sends
its own; §7.1.7 discards only what follows a protocol error. So when messages and then a close
(or an error) arrive in one read, the app answers the messages first and the close frame
follows, within ``--ws-close-timeout``. Bytes are fed to HTTP1Protocol; wsproto's client
parses what comes back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsproto.events import CloseConnection, Event, TextMessage
from wsproto.extensions import PerMessageDeflate

from gateway.streams.websocket import WebSocketClosedError
from tests.test_websocket_stream import Peer, _masked, echo_app, run

# What the client sends right behind its messages, and the close code the server answers with.
ENDINGS = {
    "close frame": (_masked(0x88, (4000).to_bytes(2, "big") + b"bye"), 4000),
    "reserved bit": (_masked(0xA1, b"x"), 1002),  # RSV2 without an extension (§5.2)
    "unknown opcode": (_masked(0x83, b""), 1002),  # opcode 3 is reserved (§5.2)
    "stray continuation": (_masked(0x80, b"x"), 1002),  # nothing to continue (§5.4)
}


def _texts(events: list[Event]) -> list[str]:
    return [event.data for event in events if isinstance(event, TextMessage)]


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_replies_to_messages_before_a_close_or_an_error_go_out_first(ending: str) -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open()
        tail, code = ENDINGS[ending]
        peer.protocol.feed(_masked(0x81, b"one") + _masked(0x81, b"two") + tail)
        events = await peer.settle(30)
        assert _texts(events) == ["one", "two"]
        assert isinstance(events[-1], CloseConnection) and events[-1].code == code
        assert peer.transport.closed
        assert [message["type"] for message in seen[2:]] == ["websocket.receive"] * 2 + ["websocket.disconnect"]
        assert seen[-1]["code"] == code
        await peer.finish()

    run(test)


def test_replies_after_a_close_are_compressed_too() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen))
        await peer.open(extensions=[PerMessageDeflate()])
        data = peer.client.send(TextMessage(data="squeeze " * 100))
        data += peer.client.send(CloseConnection(code=1000))
        peer.protocol.feed(data)
        events = await peer.settle(30)
        assert _texts(events) == ["squeeze " * 100]
        assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000
        await peer.finish()

    run(test)


def test_send_after_the_app_saw_the_disconnect_is_refused() -> None:
    async def test() -> None:
        errors: list[BaseException] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": message["text"]})
            assert (await receive())["type"] == "websocket.disconnect"
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except WebSocketClosedError as exc:
                errors.append(exc)

        peer = Peer(app)
        await peer.open()
        peer.protocol.feed(_masked(0x81, b"hi") + _masked(0x88, (1000).to_bytes(2, "big")))
        events = await peer.settle(30)
        assert _texts(events) == ["hi"] and isinstance(events[-1], CloseConnection)
        assert errors and "closed (code 1000)" in str(errors[0])
        await peer.finish()

    run(test)


def test_an_app_slower_than_the_close_timeout_is_cut_off() -> None:
    async def test() -> None:
        errors: list[BaseException] = []
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            await release.wait()
            try:
                await send({"type": "websocket.send", "text": "late reply"})
            except WebSocketClosedError as exc:
                errors.append(exc)

        peer = Peer(app, ws_close_timeout=0.05)
        await peer.open()
        peer.protocol.feed(_masked(0x81, b"hi") + _masked(0x88, (1000).to_bytes(2, "big")))
        assert await peer.settle(30) == [] and not peer.transport.closed
        await asyncio.sleep(0.1)
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and events[0].code == 1000
        assert peer.transport.closed
        release.set()
        await peer.settle()
        assert errors, "a send after the close timeout went through"
        await peer.finish()

    run(test)


def test_app_that_returns_or_closes_while_replying_sends_the_peers_close() -> None:
    async def test() -> None:
        for ending in ("return", "close"):

            async def app(scope: Any, receive: Any, send: Any, ending: str = ending) -> None:
                await receive()
                await send({"type": "websocket.accept"})
                message = await receive()
                await send({"type": "websocket.send", "text": message["text"].upper()})
                if ending == "close":
                    await send({"type": "websocket.close", "code": 4001})

            peer = Peer(app)
            await peer.open()
            peer.protocol.feed(_masked(0x81, b"hi") + _masked(0x88, (4000).to_bytes(2, "big")))
            events = await peer.settle(30)
            assert _texts(events) == ["HI"]
            # The close answers the peer's (RFC 6455 §5.5.1 echoes its code).
            assert isinstance(events[-1], CloseConnection) and events[-1].code == 4000, ending
            assert peer.transport.closed
            await peer.finish()

    run(test)


def test_a_close_while_the_app_waits_in_receive_is_answered_at_once() -> None:
    async def test() -> None:
        async def pushing_app(scope: Any, receive: Any, send: Any) -> None:
            # Sends without receiving after the connect: no message of the peer's to answer.
            await receive()
            await send({"type": "websocket.accept"})
            await asyncio.sleep(3600)

        peer = Peer(pushing_app, ws_close_timeout=30)
        await peer.open()
        peer.send(CloseConnection(code=1000))
        events = await peer.settle()
        assert isinstance(events[0], CloseConnection) and peer.transport.closed
        await peer.finish()

    run(test)


def test_a_flood_of_tiny_fragments_is_parsed_a_slice_per_loop_turn() -> None:
    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_max_message_size=0)
        await peer.open()
        # 15,000 one-byte fragments of one message (105 KB) arrive in one read: parsing them
        # takes wsproto a good fraction of a second, which other connections must not wait for.
        flood = _masked(0x01, b"a") + _masked(0x00, b"a") * 14_998 + _masked(0x80, b"a")
        ticks = 0
        peer.protocol.feed(flood)
        for _ in range(1000):
            if len(seen) > 2:
                break
            ticks += 1
            await asyncio.sleep(0)
        assert seen[2] == {"type": "websocket.receive", "text": "a" * 15_000, "bytes": None}
        assert ticks >= 5, f"the whole read was parsed in {ticks} loop turns"
        await peer.finish()

    run(test)
