"""GOAWAY both ways (RFC 9113 §6.8), with raw frames over real sockets.

Graceful shutdown sends no GOAWAY while streams are open (clients built on the python h2
library fail every open stream on any GOAWAY): new streams are refused with REFUSED_STREAM
(§8.7) and GOAWAY goes out after the last response. A client's GOAWAY stops new streams only;
the streams it had opened are answered, and PING / WINDOW_UPDATE are served meanwhile.
"""

from __future__ import annotations

import time

from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
)

from tests.conftest import RunningServer, running_server
from tests.test_http2_peer import CANCEL, REFUSED_STREAM, FramePeer, app

FRAME_SIZE_ERROR = 0x6


def request_shutdown(server: RunningServer) -> None:
    server.loop.call_soon_threadsafe(server.server.request_shutdown)


def get_frame(peer: FramePeer, stream_id: int, path: bytes) -> HeadersFrame:
    frame = HeadersFrame(stream_id, peer.block(peer.request_headers(stream_id, path)))
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame


def ends_stream(frame: Frame, stream_id: int) -> bool:
    return frame.stream_id == stream_id and ("END_STREAM" in frame.flags or isinstance(frame, RstStreamFrame))


def body_of(frames: list[Frame], stream_id: int) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


# -- graceful shutdown ----------------------------------------------------------------------


def test_shutdown_finishes_the_stream_in_flight_before_any_goaway() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/sleep?0.5")
        time.sleep(0.1)
        request_shutdown(server)
        frames = peer.closed(timeout=5)
        end = next(i for i, f in enumerate(frames) if ends_stream(f, 1))
        goaways = [i for i, f in enumerate(frames) if isinstance(f, GoAwayFrame)]
        assert body_of(frames, 1) == b"slept"
        assert not isinstance(frames[end], RstStreamFrame)
        assert len(goaways) == 1 and goaways[0] > end  # after the response, never before
        goaway = frames[goaways[0]]
        assert isinstance(goaway, GoAwayFrame)
        assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
        server.thread.join(5)
        assert not server.thread.is_alive()


def test_shutdown_refuses_new_streams_while_draining() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/sleep?0.8")
        time.sleep(0.1)
        request_shutdown(server)
        time.sleep(0.1)
        peer.request(3, b"/info")
        assert peer.reset_of(3) == REFUSED_STREAM  # §8.7: not processed, safe to retry
        frames = peer.closed(timeout=5)
        assert body_of(frames, 1) == b"slept"
        goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [(g.error_code, g.last_stream_id) for g in goaway] == [(0, 3)]


def test_shutdown_sends_goaway_at_once_to_an_idle_connection() -> None:
    with running_server(app, graceful_timeout=10) as server, FramePeer(server) as peer:
        peer.request(1, b"/info")
        assert peer.response(1)["status"] == 200
        started = time.monotonic()
        request_shutdown(server)
        goaway = peer.goaway()
        assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
        peer.closed()
        assert time.monotonic() - started < 3


def test_graceful_timeout_resets_streams_then_sends_goaway() -> None:
    with running_server(app, graceful_timeout=0.3) as server, FramePeer(server) as peer:
        peer.request(1, b"/sleep?10")
        time.sleep(0.1)
        request_shutdown(server)
        frames = peer.closed(timeout=5)
        kinds = [
            (type(f).__name__, getattr(f, "error_code", None))
            for f in frames
            if f.stream_id or isinstance(f, GoAwayFrame)
        ]
        assert kinds[-2:] == [("RstStreamFrame", CANCEL), ("GoAwayFrame", 0)]


# -- the client's GOAWAY --------------------------------------------------------------------


def test_get_and_client_goaway_in_one_packet_is_answered() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.sock.sendall(get_frame(peer, 1, b"/info").serialize() + GoAwayFrame(0, last_stream_id=0).serialize())
        frames = peer.closed(timeout=5)
        statuses = [dict(f.decoded).get(b":status") for f in frames if isinstance(f, HeadersFrame)]  # type: ignore[attr-defined]
        assert statuses == [b"200"]
        assert b'"path": "/info"' in body_of(frames, 1)
        goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [(g.error_code, g.last_stream_id) for g in goaway] == [(0, 1)]
