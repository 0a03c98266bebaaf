"""--body-timeout: a client that stalls mid-body is dropped; a slow app is not held against it."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from hyperframe.frame import DataFrame, Frame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from gateway.protocols.http2_body_timeout import BodyTimeout
from tests.conftest import running_server
from tests.test_http2_attacks import bystander, wait_until
from tests.test_http2_peer import CANCEL, FramePeer

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")


def make_app(log: list[Any], read_delay: float = 0.0) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        total = 0
        while True:
            if read_delay:
                await asyncio.sleep(read_delay)
            message = await receive()
            if message["type"] == "http.disconnect":
                log.append(("disconnect", total))
                return
            total += len(message["body"])
            if not message["more_body"]:
                break
        log.append(("complete", total))
        body = str(total).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def test_stalled_upload_is_closed_after_body_timeout() -> None:
    log: list[Any] = []
    with running_server(make_app(log), body_timeout=0.4) as server:
        with socket.create_connection((server.host, server.port)) as client:
            client.settimeout(5)
            client.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
            started = time.monotonic()
            assert client.recv(100) == b""  # the server closed the connection
            elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 4
    deadline = time.monotonic() + 3
    while not log and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log == [("disconnect", 100)]


def test_slow_app_with_paused_reading_is_not_a_stalled_client() -> None:
    # 256 KiB sent at once to an app that reads slowly: reading pauses for the app for far
    # longer than the body timeout, and the upload must still complete.
    log: list[Any] = []
    size = 256 * 1024
    with running_server(make_app(log, read_delay=0.5), body_timeout=0.3) as server:
        with socket.create_connection((server.host, server.port)) as client:
            client.settimeout(20)
            client.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size + b"b" * size)
            response = b""
            while not response.endswith(str(size).encode()):
                chunk = client.recv(4096)
                assert chunk, f"closed early; app saw {log}"
                response += chunk
    assert response.startswith(b"HTTP/1.1 200 ")
    assert log == [("complete", size)]


# -- HTTP/2: the same timeout per stream (gateway/protocols/http2_body_timeout.py) ------------


def pump(peer: FramePeer, seconds: float, tick: Callable[[int], list[Frame]]) -> tuple[list[tuple[float, Frame]], int]:
    """For ``seconds``, send ``tick(n)`` every 0.2 s; (time, frame) for what the server sent."""
    received: list[tuple[float, Frame]] = []
    started = time.monotonic()
    end = started + seconds
    next_tick, ticks = started, 0
    while (now := time.monotonic()) < end:
        if now >= next_tick:
            peer.send(*tick(ticks))
            ticks += 1
            next_tick += 0.2
        try:
            frame = peer.read_frame(max(0.01, min(next_tick, end) - time.monotonic()))
        except TimeoutError:
            continue
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            peer.acknowledge_settings()
        received.append((time.monotonic() - started, frame))
    return received, ticks


def ping() -> PingFrame:
    return PingFrame(0, opaque_data=b"12345678")


def resets(frames: list[tuple[float, Frame]]) -> list[tuple[float, int, int]]:
    return [(at, frame.stream_id, frame.error_code) for at, frame in frames if isinstance(frame, RstStreamFrame)]


def test_h2_stalled_stream_is_reset_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.error")
    log: list[Any] = []
    with running_server(make_app(log), body_timeout=0.5) as server, bystander(server), FramePeer(server) as peer:
        peer.request(1, b"/stalls", b"POST", end_stream=False)
        peer.data(1, b"a" * 100)
        # Stream 3 on the same connection uploads slowly but steadily; PINGs are no progress.
        peer.request(3, b"/steady", b"POST", end_stream=False)
        frames, ticks = pump(peer, 1.6, lambda _: [ping(), DataFrame(3, b"b" * 10)])
        [(at, stream_id, error_code)] = resets(frames)
        assert (stream_id, error_code) == (1, CANCEL)
        assert 0.3 < at < 1.3
        peer.data(3, b"", end_stream=True)
        response = peer.response(3)
        assert (response["status"], response["body"], response["reset"]) == (200, b"%d" % (10 * ticks), None)
        peer.request(5, b"/after")
        assert peer.response(5)["status"] == 200
    # The bystander's GETs log ("complete", 0) too.
    assert wait_until(lambda: ("disconnect", 100) in log and ("complete", 10 * ticks) in log)
    assert [entry for entry in log if entry[0] == "disconnect"] == [("disconnect", 100)]
    assert "HTTP/2 stream 1: request body stalled for 0.5s; stream reset" in caplog.text
    assert "Traceback" not in caplog.text


def test_h2_slow_but_steady_upload_completes() -> None:
    log: list[Any] = []
    with running_server(make_app(log), body_timeout=0.5) as server, FramePeer(server) as peer:
        peer.request(1, b"/upload", b"POST", end_stream=False)
        frames, ticks = pump(peer, 2.2, lambda _: [DataFrame(1, b"c" * 1000)])
        assert resets(frames) == []
        peer.data(1, b"", end_stream=True)
        response = peer.response(1)
        assert (response["status"], response["body"]) == (200, b"%d" % (1000 * ticks))
    assert ticks >= 10
    assert wait_until(lambda: log == [("complete", 1000 * ticks)])


def test_h2_app_that_does_not_read_is_not_a_stalled_client() -> None:
    # The app takes 1.2 s to read: the client has filled the stream's window (65,535 bytes,
    # the most before our SETTINGS count) and we hand none of it back, so its silence meanwhile
    # is ours. Once the app reads, the client's clock starts again.
    log: list[Any] = []
    with running_server(make_app(log, read_delay=1.2), body_timeout=0.5) as server, FramePeer(server) as peer:
        peer.request(1, b"/upload", b"POST", end_stream=False)
        peer.send(*(DataFrame(1, b"d" * 16384) for _ in range(3)), DataFrame(1, b"d" * 16383))

        def tick(count: int) -> list[Frame]:
            return [ping(), DataFrame(1, b"e", flags=["END_STREAM"])] if count == 7 else [ping()]

        frames, _ = pump(peer, 1.8, tick)
        assert resets(frames) == []
        response = peer.response(1)
        assert (response["status"], response["body"], response["reset"]) == (200, b"65536", None)
    assert log == [("complete", 65536)]


def test_h2_client_waiting_for_100_continue_is_not_timed() -> None:
    log: list[Any] = []
    with running_server(make_app(log, read_delay=1.0), body_timeout=0.5) as server, FramePeer(server) as peer:
        peer.request(1, b"/upload", b"POST", [(b"expect", b"100-continue")], end_stream=False)
        frames, _ = pump(peer, 1.4, lambda _: [ping()])
        assert resets(frames) == []
        informational = [frame for _, frame in frames if isinstance(frame, HeadersFrame)]
        assert [dict(frame.decoded)[b":status"] for frame in informational] == [b"100"]  # type: ignore[attr-defined]
        peer.data(1, b"hello", end_stream=True)
        response = peer.response(1)
        assert (response["status"], response["body"]) == (200, b"5")


def test_body_timeout_unit_times_only_what_it_watches() -> None:
    async def main() -> None:
        stalled: list[int] = []
        held_up_by_us = {3}

        def on_stall(stream_id: int) -> bool:
            stalled.append(stream_id)
            return stream_id not in held_up_by_us

        timeout = BodyTimeout(0.2, on_stall)
        timeout.watch(1, expect_continue=False)
        timeout.watch(3, expect_continue=False)
        timeout.watch(5, expect_continue=True)  # untimed until the 100 goes out
        timeout.watch(7, expect_continue=False)
        timeout.forget(7)
        timeout.watch(9, expect_continue=False)
        for _ in range(10):  # the app keeps taking stream 9's body: never stalls
            await asyncio.sleep(0.05)
            timeout.restart(9)
        assert stalled.count(1) == 1
        assert stalled.count(3) >= 1  # looked at again later, never dropped
        assert 5 not in stalled and 7 not in stalled and 9 not in stalled
        assert timeout.watched == 3  # 3, 5 and 9
        timeout.forget(3)
        timeout.forget(9)
        timeout.restart(5)
        timeout.watch(11, expect_continue=False)
        await asyncio.sleep(0.1)
        timeout.restart_all()  # e.g. the connection window reopened: 5 and 11 start anew
        await asyncio.sleep(0.12)  # 0.22 s since they started: past their first deadline
        assert 5 not in stalled and 11 not in stalled
        await asyncio.sleep(0.3)
        assert stalled.count(5) == 1 and stalled.count(11) == 1
        assert timeout.watched == 0
        timeout.watch(13, expect_continue=False)
        timeout.close()
        await asyncio.sleep(0.3)
        assert 13 not in stalled

    asyncio.run(main())
