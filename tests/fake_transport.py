"""Drive :class:`HTTP1Protocol` without sockets: a recording transport and an h11 client peer.

STYLE rule 6: most tests feed bytes to the protocol object and check what comes out with a
real peer state machine. :class:`FakeTransport` implements ``gateway.protocols.common.Transport``
and records everything the adapter asks of it; :class:`HTTP1Harness` wires it to an
``HTTP1Protocol`` and a ``ServerContext``. Everything here must run inside a running loop
(``asyncio.run``), because the stream starts the app as a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, BinaryIO

import h11

from gateway.config import Config
from gateway.context import ServerContext
from gateway.events import ConnectionInfo, Request
from gateway.protocols.common import read_file_chunks
from gateway.protocols.http1 import HTTP1Protocol

CLIENT = ("127.0.0.1", 50123)
SERVER = ("127.0.0.1", 8000)


class FakeTransport:
    """A ``Transport`` that keeps what is written and counts pause/resume and timer calls."""

    def __init__(self) -> None:
        self.write_paused = False
        self.output = bytearray()
        self.closed = False
        self.aborted = False
        self.reading_paused = False
        self.pauses = 0
        self.resumes = 0
        self.timeouts: list[tuple[float, str]] = []
        self.timeout_cleared = 0
        self.files_sent = 0
        self._drained = asyncio.Event()

    def write(self, data: bytes, *, flush: bool = False) -> None:
        if not self.closed:
            self.output += data

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            self._drained.clear()
            await self._drained.wait()

    def set_write_paused(self, paused: bool) -> None:
        """What the connection does on ``pause_writing``/``resume_writing``."""
        self.write_paused = paused
        if not paused:
            self._drained.set()

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> None:
        """Like the connection on TLS: the file's bytes, read in chunks, after what is queued."""
        self.files_sent += 1
        for chunk in read_file_chunks(file, offset, count, 4096):
            self.write(chunk)

    def close(self) -> None:
        self.closed = True
        self._drained.set()

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.pauses += 1
        self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.resumes += 1
        self.reading_paused = False

    def set_timeout(self, seconds: float, reason: str) -> None:
        self.timeouts.append((seconds, reason))

    def clear_timeout(self) -> None:
        self.timeout_cleared += 1

    def upgrade_to_http2(self, request: Request, settings: bytes, leftover: bytes) -> None:
        raise AssertionError("no test here asks for h2c")

    def take(self) -> bytes:
        """The bytes written since the last call."""
        data = bytes(self.output)
        self.output.clear()
        return data


class HTTP1Harness:
    """One ``HTTP1Protocol`` on a :class:`FakeTransport`, serving ``app``."""

    def __init__(
        self,
        app: Any,
        *,
        tls: bool = False,
        state: dict[str, Any] | None = None,
        **config: Any,
    ) -> None:
        config.setdefault("access_log", False)
        self.context = ServerContext(config=Config(**config), app=app, state=state)
        self.transport = FakeTransport()
        self.info = ConnectionInfo(client=CLIENT, server=SERVER, tls=tls)
        self.protocol = HTTP1Protocol(self.context, self.transport, self.info)

    def feed(self, data: bytes) -> None:
        self.protocol.feed(data)

    async def settle(self, until: Callable[[], bool] | None = None, timeout: float = 2.0) -> None:
        """Let app tasks run until ``until()`` holds, or until they are all done/blocked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for _ in range(20):
                await asyncio.sleep(0)
            if until is not None:
                if until():
                    return
                await asyncio.sleep(0.005)
                continue
            if all(task.done() for task in self.context.tasks) or not self.context.tasks:
                return
            await asyncio.sleep(0.005)
        if until is not None:
            raise AssertionError("condition not reached in time")

    async def finish(self) -> None:
        """Wait for every app task to end (fails the test if one hangs)."""
        tasks = list(self.context.tasks)
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2.0)


class Peer:
    """The client side: an h11 CLIENT state machine that writes requests and parses answers."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)

    def head(self, method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None) -> bytes:
        """The bytes of a request head (``host`` added)."""
        fields = [("host", "example.test"), *(headers or [])]
        return self.h11.send(h11.Request(method=method, target=target, headers=fields)) or b""

    def data(self, data: bytes) -> bytes:
        """The bytes of one piece of request body (a chunk, if the request is chunked)."""
        return self.h11.send(h11.Data(data=data)) or b""

    def end(self) -> bytes:
        """The bytes that end the request body."""
        return self.h11.send(h11.EndOfMessage()) or b""

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> bytes:
        """The bytes of a complete request (Content-Length added for a body)."""
        fields = list(headers or [])
        if body is not None and not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in fields):
            fields.append(("content-length", str(len(body))))
        data = self.head(method, target, fields)
        if body:
            data += self.data(body)
        return data + self.end()

    def events(self, data: bytes, *, closed: bool = False) -> list[Any]:
        """Every event h11 parses from ``data`` (and the close, if ``closed``)."""
        if data:  # h11 reads b"" as the end of the stream
            self.h11.receive_data(data)
        if closed:
            self.h11.receive_data(b"")
        found: list[Any] = []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return found
            found.append(event)
            if type(event) is h11.ConnectionClosed:
                return found

    def next_cycle(self) -> None:
        """Both sides finished one exchange: ready for the next request."""
        self.h11.start_next_cycle()


def response_parts(events: list[Any]) -> tuple[list[h11.InformationalResponse], h11.Response, bytes, Any]:
    """Split parsed events into interim responses, the final response, its body, its end."""
    informational = [event for event in events if type(event) is h11.InformationalResponse]
    finals = [event for event in events if type(event) is h11.Response]
    assert len(finals) == 1, events
    body = b"".join(bytes(event.data) for event in events if type(event) is h11.Data)
    ends = [event for event in events if type(event) is h11.EndOfMessage]
    return informational, finals[0], body, ends[0] if ends else None
