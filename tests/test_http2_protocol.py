"""HTTP/2 protocol rules without sockets: frames into ``HTTP2Protocol``, frames out.

The connection-level rules of RFC 9113 (error codes of connection errors, GOAWAY both ways,
graceful shutdown) driven through :class:`tests.h2_harness.HTTP2Harness`; each test runs in
milliseconds. Tests that need a real socket (TLS, ALPN, timeouts, back-pressure) stay in the
other ``test_http2_*`` modules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, SettingsFrame, WindowUpdateFrame

from gateway.protocols.http2 import CLIENT_GOAWAY_LINGER
from gateway.protocols.http2_frames import PREFACE
from tests.h2_harness import HTTP2Harness, body_of, ended, resets
from tests.test_http2_peer import CANCEL, FLOW_CONTROL_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, app

FRAME_SIZE_ERROR = 0x6
STREAM_CLOSED = 0x5


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def served(h2: HTTP2Harness, stream_id: int) -> None:
    h2.send(h2.request(stream_id, b"/info"))
    await h2.settle(lambda: ended(h2.frames(), stream_id) or ended(h2.seen, stream_id))
    assert b'"path": "/info"' in body_of(h2.seen, stream_id)


# -- connection errors carry the RFC's code (§5.4.1) ---------------------------------------

# Raw frames the RFC makes connection errors; the GOAWAY must carry the RFC's error code.
INVALID_FRAMES = {
    "RST_STREAM on idle stream (§6.4)": (b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08", PROTOCOL_ERROR),
    "WINDOW_UPDATE on idle stream (§5.1)": (b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x00\x01", PROTOCOL_ERROR),
    "SETTINGS ACK with payload (§6.5)": (
        b"\x00\x00\x06\x04\x01\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64",
        FRAME_SIZE_ERROR,
    ),
    "SETTINGS length not a multiple of 6 (§6.5)": (
        b"\x00\x00\x03\x04\x00\x00\x00\x00\x00\x00\x03\x00",
        FRAME_SIZE_ERROR,
    ),
    "SETTINGS on a stream (§6.5)": (b"\x00\x00\x06\x04\x00\x00\x00\x00\x01\x00\x03\x00\x00\x00\x64", PROTOCOL_ERROR),
    "PRIORITY on stream 0 (§6.3)": (b"\x00\x00\x05\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x10", PROTOCOL_ERROR),
    "PRIORITY of length 4 (§6.3)": (b"\x00\x00\x04\x02\x00\x00\x00\x00\x01\x00\x00\x00\x03", FRAME_SIZE_ERROR),
    "RST_STREAM of length 3 (§6.4)": (b"\x00\x00\x03\x03\x00\x00\x00\x00\x01\x00\x00\x08", FRAME_SIZE_ERROR),
    "GOAWAY on a stream (§6.8)": (b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"\x00" * 8, PROTOCOL_ERROR),
    "GOAWAY shorter than 8 bytes (§6.8)": (b"\x00\x00\x04\x07\x00\x00\x00\x00\x00" + b"\x00" * 4, FRAME_SIZE_ERROR),
    "CONTINUATION without HEADERS (§6.10)": (b"\x00\x00\x01\x09\x04\x00\x00\x00\x01\x82", PROTOCOL_ERROR),
    "DATA on stream 0 (§6.1)": (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", PROTOCOL_ERROR),
    "DATA on idle stream (§5.1)": (b"\x00\x00\x01\x00\x00\x00\x00\x00\x01x", PROTOCOL_ERROR),
    "PING on a stream (§6.7)": (b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\x00" * 8, PROTOCOL_ERROR),
    "PING of length 6 (§6.7)": (b"\x00\x00\x06\x06\x00\x00\x00\x00\x00" + b"123456", FRAME_SIZE_ERROR),
    "WINDOW_UPDATE of length 3 (§6.9)": (b"\x00\x00\x03\x08\x00\x00\x00\x00\x00\x00\x00\x01", FRAME_SIZE_ERROR),
    "WINDOW_UPDATE of 0 on the connection (§6.9)": (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + bytes(4), PROTOCOL_ERROR),
    "HEADERS on stream 0 (§6.2)": (b"\x00\x00\x01\x01\x05\x00\x00\x00\x00\x82", PROTOCOL_ERROR),
    "HEADERS on an even stream (§5.1.1)": (b"\x00\x00\x01\x01\x05\x00\x00\x00\x02\x82", PROTOCOL_ERROR),
    "PUSH_PROMISE from a client (§8.4)": (b"\x00\x00\x05\x05\x04\x00\x00\x00\x01\x00\x00\x00\x02\x82", PROTOCOL_ERROR),
    "frame larger than SETTINGS_MAX_FRAME_SIZE (§4.2)": (b"\x00\x40\x01\x00\x00\x00\x00\x00\x01", FRAME_SIZE_ERROR),
    "SETTINGS_ENABLE_PUSH of 2 (§6.5.2)": (
        b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x02",
        PROTOCOL_ERROR,
    ),
    "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1 (§6.5.2)": (
        b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x80\x00\x00\x00",
        FLOW_CONTROL_ERROR,
    ),
    "SETTINGS_MAX_FRAME_SIZE below 16384 (§6.5.2)": (
        b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00\x3f\xff",
        PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_FRAMES))
def test_invalid_frame_gets_goaway_with_the_rfc_error_code(case: str) -> None:
    wire, error = INVALID_FRAMES[case]

    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.feed(wire)
        goaway = h2.goaway()
        assert goaway is not None and goaway.error_code == error
        assert h2.transport.closed

    run(main())


def test_invalid_preface_gets_goaway_protocol_error() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app, preface=False)
        h2.feed(PREFACE[:10] + b"X" * 14)
        goaway = h2.goaway()
        assert goaway is not None and goaway.error_code == PROTOCOL_ERROR

    run(main())


def test_decreasing_stream_id_is_protocol_error() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        await served(h2, 5)
        h2.send(h2.request(3, b"/info"))
        goaway = h2.goaway()
        assert goaway is not None and goaway.error_code == PROTOCOL_ERROR

    run(main())


def test_data_after_end_stream_is_stream_closed() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.send(h2.request(1, b"/sleep?0.3"))
        h2.feed(b"\x00\x00\x01\x00\x01\x00\x00\x00\x01x")  # DATA on half-closed (remote)
        await h2.settle(lambda: bool(resets(h2.frames()) or resets(h2.seen)))
        assert resets(h2.seen) == {1: STREAM_CLOSED}

    run(main())


def test_settings_and_ping_are_answered() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.send(PingFrame(0, opaque_data=b"abcdefgh"))
        frames = h2.frames()
        assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames)
        pong = [f for f in frames if isinstance(f, PingFrame)]
        assert [(p.opaque_data, "ACK" in p.flags) for p in pong] == [(b"abcdefgh", True)]

    run(main())


# -- the client's GOAWAY (§6.8) -------------------------------------------------------------


def test_get_and_client_goaway_in_one_packet_is_answered() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.feed(h2.request(1, b"/info").serialize() + GoAwayFrame(0, last_stream_id=0).serialize())
        await h2.settle(lambda: h2.goaway() is not None)
        assert b'"path": "/info"' in body_of(h2.seen, 1)
        goaway = h2.goaway()
        assert goaway is not None and (goaway.error_code, goaway.last_stream_id) == (0, 1)
        assert h2.transport.closed

    run(main())


def test_goaway_fed_byte_by_byte_after_a_get_is_answered() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        wire = h2.request(1, b"/info").serialize() + GoAwayFrame(0, additional_data=b"bye").serialize()
        for index in range(len(wire)):
            h2.feed(wire[index : index + 1])
        await h2.settle(lambda: h2.goaway() is not None)
        assert b'"path": "/info"' in body_of(h2.seen, 1)

    run(main())


def test_ping_and_window_update_served_after_client_goaway_then_close() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.send(h2.request(1, b"/sleep?0.2"), GoAwayFrame(0, last_stream_id=0))
        h2.send(WindowUpdateFrame(0, window_increment=10), WindowUpdateFrame(1, window_increment=10))
        h2.send(PingFrame(0, opaque_data=b"12345678"))
        frames = h2.frames()
        assert any(isinstance(f, PingFrame) and "ACK" in f.flags for f in frames)
        assert h2.goaway() is None and not h2.transport.closed
        h2.send(h2.request(3, b"/info"))  # no new stream after the client's GOAWAY
        assert resets(h2.frames()) == {3: REFUSED_STREAM}
        await h2.settle(lambda: h2.goaway() is not None)
        assert body_of(h2.seen, 1) == b"slept"
        assert h2.transport.closed

    run(main())


def test_client_goaway_closes_an_idle_connection_after_a_short_linger() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        await served(h2, 1)
        h2.send(GoAwayFrame(0, error_code=0xFF, last_stream_id=0), PingFrame(0, opaque_data=b"h2spec\x00\x00"))
        # A PING right behind the GOAWAY is answered, not met by a closed socket...
        assert any(isinstance(f, PingFrame) and "ACK" in f.flags for f in h2.frames())
        assert not h2.transport.closed
        assert h2.transport.timeouts[-1] == (CLIENT_GOAWAY_LINGER, "client sent GOAWAY")
        # ...and when the linger ends: GOAWAY NO_ERROR with the last stream served, close.
        h2.protocol.timeout("client sent GOAWAY")
        goaway = h2.goaway()
        assert goaway is not None and (goaway.error_code, goaway.last_stream_id) == (0, 1)
        assert h2.transport.closed

    run(main())


# -- graceful shutdown ------------------------------------------------------------------------


def test_shutdown_sends_no_goaway_while_a_stream_is_open() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.send(h2.request(1, b"/sleep?0.2"))
        await h2.settle(lambda: bool(h2.frames()) or True)
        h2.protocol.shutdown()
        assert h2.goaway() is None
        h2.send(h2.request(3, b"/info"))
        assert resets(h2.frames()) == {3: REFUSED_STREAM}
        await h2.settle(lambda: h2.goaway() is not None)
        assert body_of(h2.seen, 1) == b"slept"
        goaway = h2.goaway()
        assert goaway is not None and (goaway.error_code, goaway.last_stream_id) == (0, 3)
        end = next(i for i, f in enumerate(h2.seen) if f.stream_id == 1 and "END_STREAM" in f.flags)
        assert h2.seen.index(goaway) > end
        assert h2.transport.closed

    run(main())


def test_shutdown_of_an_idle_connection_sends_goaway_at_once() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        await served(h2, 1)
        h2.protocol.shutdown()
        goaway = h2.goaway()
        assert goaway is not None and (goaway.error_code, goaway.last_stream_id) == (0, 1)
        assert h2.transport.closed

    run(main())


def test_graceful_timeout_resets_open_streams_then_goaway() -> None:
    async def main() -> None:
        h2 = HTTP2Harness(app)
        h2.send(h2.request(1, b"/sleep?5"))
        await h2.settle(lambda: True)
        h2.protocol.shutdown()
        h2.protocol.cancel_streams()
        frames = h2.frames()
        assert resets(frames) == {1: CANCEL}
        assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == 0

    run(main())


def test_end_stream_rides_on_the_last_data_frame() -> None:
    # A body sent with more_body=False: one DATA frame carrying END_STREAM, no empty DATA frame.
    async def main() -> None:
        h2 = HTTP2Harness(app)
        await served(h2, 1)
        data = [f for f in h2.seen if isinstance(f, DataFrame) and f.stream_id == 1]
        assert len(data) == 1 and data[0].data and "END_STREAM" in data[0].flags

    run(main())
