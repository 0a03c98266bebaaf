"""RFC 9113 conformance, section by section, driven with raw frames over real sockets."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import running_server
from tests.test_http2_peer import (
    CANCEL,
    FLOW_CONTROL_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    FramePeer,
    app,
)

STREAM_CLOSED = 0x5


def served(peer: FramePeer, stream_id: int) -> None:
    """The connection still serves a normal request on ``stream_id``."""
    peer.request(stream_id, b"/info")
    assert peer.response(stream_id)["status"] == 200


# -- §6.5 SETTINGS ------------------------------------------------------------------------


def test_settings_are_acknowledged() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        frames = peer.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        assert "ACK" in frames[-1].flags


# -- §5.1.2 stream concurrency --------------------------------------------------------------


def test_streams_past_the_limit_are_refused_and_the_connection_goes_on() -> None:
    with running_server(app, h2_max_concurrent_streams=2) as server, FramePeer(server) as peer:
        peer.request(1, b"/wait")
        peer.request(3, b"/wait")
        peer.request(5, b"/info")
        assert peer.reset_of(5) == REFUSED_STREAM
        peer.send(RstStreamFrame(1, error_code=CANCEL))
        served(peer, 7)


# -- §8.2, §8.3 header validation: malformed requests are stream errors ---------------------


MALFORMED = {
    "uppercase name": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"X-Upper", b"1")],
    "connection header": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"connection", b"close")],
    "te not trailers": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"te", b"gzip")],
    "pseudo after regular": [(b":method", b"GET"), (b":scheme", b"https"), (b"accept", b"*/*"), (b":path", b"/")],
    "unknown pseudo": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":foo", b"bar")],
    "response pseudo": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":status", b"200")],
    "missing path": [(b":method", b"GET"), (b":scheme", b"https")],
    "empty path": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"")],
    "repeated method": [(b":method", b"GET"), (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")],
    "value with newline": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"x", b"a\nb")],
    "value with leading space": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"x", b" a")],
    ":protocol without CONNECT": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":protocol", b"x")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_resets_only_its_stream(case: str) -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        frame = HeadersFrame(1, peer.block(MALFORMED[case]), flags=["END_HEADERS", "END_STREAM"])
        peer.send(frame)
        assert peer.reset_of(1) == PROTOCOL_ERROR
        served(peer, 3)


def test_authority_becomes_host_and_a_different_host_is_400() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/info", extra=[(b"host", b"other.example")])
        response = peer.response(1)
        assert response["status"] == 400
        served(peer, 3)


def test_content_length_mismatch_is_an_error() -> None:
    # §8.1.1: a body that does not match content-length is malformed.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/echo", b"POST", extra=[(b"content-length", b"10")], end_stream=False)
        peer.data(1, b"abc", end_stream=True)
        frames = peer.read_until(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)))
        assert frames[-1].error_code == PROTOCOL_ERROR


def test_request_body_larger_than_max_body_size_is_413() -> None:
    with running_server(app, max_body_size=1000) as server, FramePeer(server) as peer:
        peer.request(1, b"/wait", b"POST", extra=[(b"content-length", b"5000")], end_stream=False)
        assert peer.response(1)["status"] == 413
        served(peer, 3)


def test_streamed_body_past_max_body_size_is_413() -> None:
    with running_server(app, max_body_size=1000) as server, FramePeer(server) as peer:
        peer.request(1, b"/wait", b"POST", end_stream=False)
        peer.data(1, b"a" * 800)
        peer.data(1, b"b" * 800)
        assert peer.response(1)["status"] == 413
        served(peer, 3)


# -- §6.9 flow control ----------------------------------------------------------------------


def test_response_respects_stream_window_and_frame_size() -> None:
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 1000}
    with running_server(app) as server, FramePeer(server, settings=settings) as peer:
        peer.request(1, b"/download?50000")
        frames = peer.read_until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        time.sleep(0.2)
        peer.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            while True:
                frames.append(peer.read_frame(timeout=0.3))
        sent = sum(len(f.data) for f in frames if isinstance(f, DataFrame))
        assert sent == 1000  # exactly the window, not a byte more
        peer.send(WindowUpdateFrame(1, window_increment=100_000))
        rest = peer.response(1)
        assert sent + len(rest["body"]) == 50000


def test_data_frames_never_exceed_max_frame_size() -> None:
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 1_000_000}
    with running_server(app) as server, FramePeer(server, settings=settings) as peer:
        peer.send(WindowUpdateFrame(0, window_increment=1_000_000))
        peer.request(1, b"/download?200000")
        frames = peer.read_until(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags, timeout=10)
        sizes = [len(f.data) for f in frames if isinstance(f, DataFrame)]
        assert sum(sizes) == 200000
        assert max(sizes) <= 16384


def test_closed_window_resets_stream_after_send_timeout() -> None:
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    with running_server(app, h2_send_timeout=0.4) as server, FramePeer(server, settings=settings) as peer:
        peer.request(1, b"/download?1000")
        started = time.monotonic()
        assert peer.reset_of(1) == CANCEL
        assert time.monotonic() - started >= 0.3
        # The connection itself goes on; a response without a body still gets through.
        peer.request(3, b"/download?0")
        assert peer.response(3)["status"] == 200


def test_request_window_is_returned_only_as_the_app_reads() -> None:
    gate = threading.Event()

    async def slow_reader(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        while not gate.is_set():
            await __import__("asyncio").sleep(0.02)
        total = 0
        while True:
            message = await receive()  # type: ignore[operator]
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"%d" % total})  # type: ignore[operator]

    with running_server(slow_reader) as server, FramePeer(server) as peer:
        peer.request(1, b"/", b"POST", end_stream=False)
        for _ in range(4):
            peer.data(1, b"x" * 16384)
        peer.data(1, b"x" * 1000)  # 66,536 bytes: the whole 65,536-byte stream window and more
        frames = peer.read_until(lambda f: isinstance(f, GoAwayFrame) or (isinstance(f, RstStreamFrame)))
        # Past the advertised window: a flow-control error, not an unbounded buffer; and no
        # window was handed back for data the app had not read.
        assert frames[-1].error_code == FLOW_CONTROL_ERROR
        assert not [f for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
        gate.set()


def test_window_updates_follow_consumption() -> None:
    # This client obeys flow control (RFC 9113 §6.9): it sends a piece only once the stream's
    # window has room, so twelve 16 KiB pieces through a 65,535-byte window get through only
    # if the server hands the window back as the app reads, and never more than was read.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/echo", b"POST", end_stream=False)
        body = b"y" * 16384
        sent = granted = 0
        for _ in range(12):
            deadline = time.monotonic() + 10
            while sent + len(body) > 65535 + granted:
                frame = peer.read_frame(timeout=max(0.01, deadline - time.monotonic()))
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    peer.acknowledge_settings()
                elif isinstance(frame, WindowUpdateFrame) and frame.stream_id == 1:
                    granted += frame.window_increment
            peer.data(1, body)
            sent += len(body)
            assert granted <= sent, "the server granted window for bytes the app had not read"
        assert granted >= sent - 65535
        peer.data(1, b"", end_stream=True)
        response = peer.response(1, timeout=10)
        assert response["status"] == 200
        assert response["body"] == body * 12
        # And none for bytes the app has not read: this app sleeps before reading anything.
        # Three quarters of the window, as h2 hands back window only once half is used.
        peer.request(3, b"/sleep?5", b"POST", end_stream=False)
        for _ in range(3):
            peer.data(3, body)
        with pytest.raises(TimeoutError):
            peer.read_until(lambda frame: isinstance(frame, WindowUpdateFrame) and frame.stream_id == 3, timeout=0.5)
        peer.send(RstStreamFrame(3, error_code=CANCEL))


# -- §4.2, §5.5, §6 frame-level rules ----------------------------------------------------------

FRAME_SIZE_ERROR = 0x6


def test_frame_larger_than_max_frame_size_is_frame_size_error() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/echo", b"POST", end_stream=False)
        peer.data(1, b"z" * 16385)
        assert peer.goaway().error_code == FRAME_SIZE_ERROR


def test_zero_window_increment_and_overflow() -> None:
    # §6.9: an increment of 0 is a PROTOCOL_ERROR; §6.9.1: past 2^31-1 a FLOW_CONTROL_ERROR.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.sock.sendall(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
        assert peer.goaway().error_code == PROTOCOL_ERROR
    with running_server(app) as server, FramePeer(server) as peer:
        peer.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
        assert peer.goaway().error_code == FLOW_CONTROL_ERROR


def test_unknown_frames_and_settings_are_ignored() -> None:
    # §5.5: unknown frame types and §6.5.2 unknown settings are ignored.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.sock.sendall(b"\x00\x00\x03\xfa\x00\x00\x00\x00\x00abc")
        peer.send(SettingsFrame(0, settings={0x99: 1}))
        served(peer, 1)


def test_window_of_one_byte_gets_one_byte_of_data() -> None:
    # §6.9.1 / §6.5.3: the last of several INITIAL_WINDOW_SIZE values applies.
    with running_server(app) as server, FramePeer(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 100}) as peer:
        peer.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1}))
        peer.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        peer.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        peer.request(1, b"/info")
        frame = peer.read_until(lambda f: isinstance(f, DataFrame))[-1]
        assert len(frame.data) == 1
        # Raising the initial window lets the stream go on (§6.9.2).
        peer.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}))
        rest = peer.response(1)["body"]
        assert json.loads(frame.data + rest)["path"] == "/info"


def test_unread_bodies_of_reset_streams_return_to_the_connection_window() -> None:
    # 20 uploads of 60 KB that their apps never read, each reset by the client: 1.2 MB,
    # more than the 1 MiB connection window. Had their bytes stayed counted, the last upload
    # could never get through.
    with running_server(app) as server, FramePeer(server) as peer:
        for stream_id in range(1, 41, 2):
            peer.request(stream_id, b"/sleep?5", b"POST", end_stream=False)
            for _ in range(4):
                peer.data(stream_id, b"u" * 15000)
            peer.send(RstStreamFrame(stream_id, error_code=CANCEL))
        peer.request(41, b"/echo", b"POST", end_stream=False)
        for _ in range(4):
            peer.data(41, b"e" * 16000)
        peer.data(41, b"", end_stream=True)
        response = peer.response(41, timeout=10)
        assert response["status"] == 200
        assert len(response["body"]) == 64000


def test_error_answer_without_window_is_the_status_alone() -> None:
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    with running_server(app) as server, FramePeer(server, settings=settings) as peer:
        peer.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        peer.request(1, b"/info", extra=[(b"host", b"elsewhere")])
        response = peer.response(1)
        assert response["status"] == 400
        assert (b"content-length", b"0") in response["headers"]
        assert response["body"] == b""
