"""Drive :class:`HTTP2Protocol` without sockets: frames in, frames out.

The HTTP/2 counterpart of :mod:`tests.fake_transport`: :class:`HTTP2Harness` wires an
``HTTP2Protocol`` to a :class:`~tests.fake_transport.FakeTransport`; the test writes frames
(built with hyperframe and hpack, so it can write what no client library would) and reads
back the frames the server wrote, parsed by hyperframe. Runs inside a running loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import hpack
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from gateway.config import Config
from gateway.context import ServerContext
from gateway.events import ConnectionInfo
from gateway.protocols.http2 import HTTP2Protocol
from gateway.protocols.http2_frames import PREFACE
from tests.fake_transport import CLIENT, SERVER, FakeTransport


class HTTP2Harness:
    """One ``HTTP2Protocol`` on a :class:`FakeTransport`, serving ``app``, past the preface."""

    def __init__(self, app: Any, *, preface: bool = True, **config: Any) -> None:
        config.setdefault("access_log", False)
        self.context = ServerContext(config=Config(**config), app=app, state=None)
        self.transport = FakeTransport()
        self.protocol = HTTP2Protocol(
            self.context, self.transport, ConnectionInfo(client=CLIENT, server=SERVER, tls=True)
        )
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self._pending = b""
        self.seen: list[Frame] = []
        if preface:
            self.feed(PREFACE + SettingsFrame(0).serialize())

    def feed(self, data: bytes) -> None:
        self.protocol.feed(data)

    def send(self, *frames: Frame) -> None:
        self.feed(b"".join(frame.serialize() for frame in frames))

    def request(
        self, stream_id: int, path: bytes = b"/", method: bytes = b"GET", *, end_stream: bool = True
    ) -> HeadersFrame:
        """The HEADERS frame of a request (not sent)."""
        fields = [(b":method", method), (b":scheme", b"https"), (b":path", path), (b":authority", b"localhost")]
        frame = HeadersFrame(stream_id, self.encoder.encode(fields))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame

    def frames(self) -> list[Frame]:
        """The frames written since the last call (HEADERS decoded into ``.decoded``)."""
        data = self._pending + self.transport.take()
        frames: list[Frame] = []
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            data = data[9 + length :]
            if isinstance(frame, HeadersFrame):
                frame.decoded = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
            frames.append(frame)
        self._pending = data
        self.seen += frames
        return frames

    async def settle(self, until: Callable[[], bool] | None = None, timeout: float = 2.0) -> None:
        """Let app tasks run until ``until()`` holds, or until they are all done/blocked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for _ in range(20):
                await asyncio.sleep(0)
            if until is not None and until():
                return
            if until is None and all(task.done() for task in self.context.tasks):
                return
            await asyncio.sleep(0.005)
        if until is not None:
            raise AssertionError("condition not reached in time")

    def goaway(self) -> GoAwayFrame | None:
        self.frames()
        found = [frame for frame in self.seen if isinstance(frame, GoAwayFrame)]
        return found[-1] if found else None


def body_of(frames: Iterable[Frame], stream_id: int) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


def ended(frames: Iterable[Frame], stream_id: int) -> bool:
    return any(f.stream_id == stream_id and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)) for f in frames)


def resets(frames: Iterable[Frame]) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
