"""Known HTTP/2 attacks, each made with raw frames while a well-behaved client is served.

Every test runs a bystander on its own connection during the attack and checks that it was
answered, so "the server stays responsive" is observed, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import RunningServer, running_server
from tests.test_http2_peer import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    PROTOCOL_ERROR,
    FramePeer,
    PeerClosed,
    app,
)

active_apps: set[asyncio.Task[Any]] = set()


async def counting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The shared test app, keeping track of which app tasks are still running."""
    task = asyncio.current_task()
    assert task is not None
    active_apps.add(task)
    try:
        await app(scope, receive, send)
    finally:
        active_apps.discard(task)


@contextlib.contextmanager
def bystander(server: RunningServer) -> Iterator[list[float]]:
    """A well-behaved client asking for /info on its own connection throughout the block."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            with FramePeer(server) as peer:
                stream_id = 1
                while not stop.is_set():
                    started = time.monotonic()
                    peer.request(stream_id, b"/info")
                    assert peer.response(stream_id, timeout=5)["status"] == 200
                    latencies.append(time.monotonic() - started)
                    stream_id += 2
                    time.sleep(0.01)
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        time.sleep(0.05)
        stop.set()
        thread.join(10)
    assert not failures, failures
    assert latencies, "the well-behaved client was never answered"
    assert max(latencies) < 5


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def send_until_closed(peer: FramePeer, frames: list[Any], rounds: int) -> None:
    """Send ``frames`` up to ``rounds`` times; stop quietly once the server drops us."""
    data = b"".join(frame.serialize() for frame in frames)
    for _ in range(rounds):
        try:
            peer.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return


# -- Rapid Reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671) ---------------------------


def test_rapid_reset_gets_enhance_your_calm_and_cancels_apps() -> None:
    with running_server(counting_app, h2_max_resets=100) as server:
        with bystander(server), FramePeer(server) as peer:
            frames = []
            for stream_id in range(1, 1200, 2):
                frames += [
                    HeadersFrame(
                        stream_id, peer.block(peer.request_headers(stream_id, b"/wait")), flags=["END_HEADERS"]
                    ),
                    RstStreamFrame(stream_id, error_code=CANCEL),
                ]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                peer.send(*frames)
            assert peer.goaway().error_code == ENHANCE_YOUR_CALM
        # Every app task of a reset stream was cancelled, none left holding memory.
        assert wait_until(lambda: not active_apps)


def test_made_you_reset_by_window_overflow_gets_enhance_your_calm() -> None:
    # A WINDOW_UPDATE that overflows a stream's window makes the server reset the stream
    # (RFC 9113 §6.9.1); those provoked resets are counted as well.
    with running_server(counting_app, h2_max_resets=50) as server:
        with bystander(server), FramePeer(server) as peer:
            frames = []
            for stream_id in range(1, 400, 2):
                frames += [
                    HeadersFrame(
                        stream_id, peer.block(peer.request_headers(stream_id, b"/wait")), flags=["END_HEADERS"]
                    ),
                    WindowUpdateFrame(stream_id, window_increment=2**31 - 1),
                ]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                peer.send(*frames)
            assert peer.goaway().error_code == ENHANCE_YOUR_CALM
        assert wait_until(lambda: not active_apps)


def test_made_you_reset_by_malformed_headers_gets_enhance_your_calm() -> None:
    with running_server(counting_app, h2_max_resets=50) as server:
        with bystander(server), FramePeer(server) as peer:
            bad = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"Bad", b"1")]
            frames = [
                HeadersFrame(sid, peer.block(bad), flags=["END_HEADERS", "END_STREAM"]) for sid in range(1, 300, 2)
            ]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                peer.send(*frames)
            assert peer.goaway().error_code == ENHANCE_YOUR_CALM


# -- CONTINUATION flood and HPACK bomb ----------------------------------------------------------


def test_continuation_flood_is_capped_in_bytes() -> None:
    with running_server(app) as server, bystander(server), FramePeer(server) as peer:
        peer.send(HeadersFrame(1, b"\x82\x87\x84", flags=["END_STREAM"]))
        junk = b"\x00" * 16384
        send_until_closed(peer, [ContinuationFrame(1, junk)], rounds=60)
        # Past --h2-max-header-list-size (64 KiB) of compressed header block: GOAWAY.
        assert peer.goaway().error_code == ENHANCE_YOUR_CALM


def test_continuation_flood_is_capped_in_frame_count() -> None:
    with running_server(app) as server, bystander(server), FramePeer(server) as peer:
        peer.send(HeadersFrame(1, b"\x82\x87\x84", flags=["END_STREAM"]))
        send_until_closed(peer, [ContinuationFrame(1, b"")], rounds=500)
        assert peer.goaway().error_code in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)


def test_hpack_bomb_is_refused() -> None:
    # One 4 KB field goes into the dynamic table, then a block references it 100 times:
    # 400 KB decoded from 100 bytes (RFC 7541 §7.3).
    with running_server(app) as server, bystander(server), FramePeer(server) as peer:
        headers = [*peer.request_headers(1, b"/info"), (b"x-bomb", b"a" * 4000)]
        peer.send(HeadersFrame(1, peer.block(headers), flags=["END_HEADERS", "END_STREAM"]))
        assert peer.response(1)["status"] == 200
        bomb = b"\x82\x87\x84" + b"\xbe" * 100  # static :method/:scheme/:path, then index 62
        peer.send(HeadersFrame(3, bomb, flags=["END_HEADERS", "END_STREAM"]))
        assert peer.goaway().error_code == ENHANCE_YOUR_CALM


# -- control-frame floods --------------------------------------------------------------------


FLOODS = {
    "PING": lambda: [PingFrame(0, opaque_data=b"12345678")],
    "SETTINGS": lambda: [SettingsFrame(0)],
    "WINDOW_UPDATE": lambda: [WindowUpdateFrame(0, window_increment=1)],
    "empty DATA": lambda: [DataFrame(1, b"")],
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_frame_flood_gets_enhance_your_calm(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.error")
    with running_server(app, h2_max_control_frames=300) as server, bystander(server), FramePeer(server) as peer:
        peer.request(1, b"/wait", b"POST", end_stream=False)
        send_until_closed(peer, FLOODS[kind]() * 100, rounds=20)
        try:
            assert peer.goaway().error_code == ENHANCE_YOUR_CALM
        except ConnectionResetError:
            # The server closed with our flood still arriving: TCP reset the connection
            # before its GOAWAY was read. The log says why it closed.
            pass
    assert "control frame flood" in caplog.text


def stalled_peer(server: RunningServer) -> FramePeer:
    """A client that asks for a large download and then reads nothing."""
    peer = FramePeer(server, preface=False)
    peer.sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    peer.sock = sock
    settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1})
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings.serialize())
    peer.send(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535))
    peer.request(1, b"/download?200000000")
    return peer


def connection_count(server: RunningServer) -> int:
    return len(server.server.context.connections)


def test_ping_flood_while_not_reading_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.error")
    # With the flood budget out of the way, what remains is the bound on replies queued
    # for a peer that does not read them.
    options = {"h2_max_control_frames": 10**9, "h2_send_timeout": 60.0}
    with running_server(app, **options) as server:
        with bystander(server) as latencies:
            assert wait_until(lambda: latencies)  # the bystander's connection is up
            peer = stalled_peer(server)
            with peer:
                assert wait_until(lambda: connection_count(server) == 2)
                time.sleep(0.5)  # the download fills every buffer on the way
                send_until_closed(peer, [PingFrame(0, opaque_data=b"12345678")] * 500, rounds=40)
                assert wait_until(lambda: connection_count(server) == 1, timeout=10)
    assert "floods control frames while not reading" in caplog.text


def test_slow_reader_is_dropped_after_send_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.error")
    with running_server(app, h2_send_timeout=0.5) as server:
        with bystander(server) as latencies:
            assert wait_until(lambda: latencies)
            peer = stalled_peer(server)
            with peer:
                started = time.monotonic()
                assert wait_until(lambda: connection_count(server) == 2)
                assert wait_until(lambda: connection_count(server) == 1, timeout=10)
                assert time.monotonic() - started >= 0.4
                assert "peer stopped reading" in caplog.text
                with pytest.raises((PeerClosed, ConnectionResetError, TimeoutError)):
                    peer.sock.settimeout(0.5)
                    while peer.sock.recv(1 << 20):
                        pass
                    raise PeerClosed("closed")


def test_resets_racing_our_own_answers_leave_the_connection_up() -> None:
    # The reset arrives in the same read as the request the server refuses (stream limit),
    # answers itself (400, 413) or was serving: nothing may be sent on a stream h2 has closed.
    with running_server(app, h2_max_concurrent_streams=1, max_body_size=10) as server, FramePeer(server) as peer:
        peer.request(1, b"/wait")
        refused = HeadersFrame(3, peer.block(peer.request_headers(3, b"/info")), flags=["END_HEADERS", "END_STREAM"])
        peer.send(refused, RstStreamFrame(3, error_code=CANCEL))
        bad_host = peer.request_headers(5, b"/info", extra=[(b"host", b"elsewhere")])
        peer.send(
            RstStreamFrame(1, error_code=CANCEL),
            HeadersFrame(5, peer.block(bad_host), flags=["END_HEADERS", "END_STREAM"]),
            RstStreamFrame(5, error_code=CANCEL),
        )
        too_large = HeadersFrame(7, peer.block(peer.request_headers(7, b"/echo", b"POST")), flags=["END_HEADERS"])
        peer.send(too_large, DataFrame(7, b"x" * 100), RstStreamFrame(7, error_code=CANCEL))
        peer.request(9, b"/info")
        assert peer.response(9)["status"] == 200


def test_requests_with_priority_are_not_a_flood() -> None:
    # Browsers send priority in every HEADERS (RFC 7540 §6.2), which h2 reports as PRIORITY.
    with running_server(app, h2_max_control_frames=20) as server, FramePeer(server) as peer:
        for stream_id in range(1, 200, 2):
            block = peer.block(peer.request_headers(stream_id, b"/info"))
            frame = HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM", "PRIORITY"])
            frame.depends_on, frame.stream_weight = 0, 200
            peer.send(frame)
            assert peer.response(stream_id)["status"] == 200


def test_window_updates_for_every_data_frame_are_not_a_flood() -> None:
    # A client may hand back each DATA frame at once, for the stream and the connection.
    with running_server(app, h2_max_control_frames=20) as server, FramePeer(server) as peer:
        peer.request(1, b"/download?2000000")  # about 120 DATA frames
        response = peer.response(1, timeout=20)  # sends two WINDOW_UPDATEs per DATA frame
        assert len(response["body"]) == 2_000_000
        peer.request(3, b"/info")
        assert peer.response(3)["status"] == 200
