"""The WebSocket benchmark's load generator: echo clients spread over several processes.

One Python process driving 50 connections needs about as much CPU per echoed message as
the server does, so on a 2-core machine (server on one core, load on the other) it, not the
server, capped messages/s. Two changes lift that cap:

- each client process runs on uvloop when it is installed (``--client-loop``), and skips
  over the echoed frames instead of collecting their payloads;
- ``--client-processes`` processes share the connections and the load core, so the kernel
  work of one process's sends overlaps with another's Python work.

Every process opens its connections and says so; then the parent hands all of them the same
``time.monotonic()`` instants (one clock for the whole machine on Linux) to start sending
and to count between, so their counts add up over the window in which it reads the
server's CPU time. Everything is bounded: connect, handshake and report timeouts, a fixed
run time.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MASK = b"\x37\xfa\x21\x3d"
# Seconds allowed for every connection's handshake, and for a client process to report.
HANDSHAKE_TIMEOUT = 20.0
REPORT_TIMEOUT = 30.0


def client_frame(payload: bytes) -> bytes:
    """One masked binary frame (RFC 6455 §5.2); the benchmark reuses it for every send."""
    length = len(payload)
    if length < 126:
        header = bytes([0x82, 0x80 | length])
    elif length < 65536:
        header = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = (_MASK * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")
    return header + _MASK + masked


@dataclass(frozen=True)
class Load:
    """What one client process does: where to connect, how many connections, what to send."""

    host: str
    port: int
    connections: int
    size: int
    ca_file: str | None  # TLS: the CA to trust; None for plain ws://
    uvloop: bool


@dataclass(frozen=True)
class Window:
    """``time.monotonic()`` instants: start sending; count from ``measure_from`` to ``measure_to``."""

    start_at: float
    measure_from: float
    measure_to: float


class EchoClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then send a frame per echoed message.

    Frames are skipped, not collected: only a header that spans reads is buffered, so a
    64 KiB echo costs a few comparisons per read instead of copies of its payload.
    """

    def __init__(self, frame: bytes, host: str, counter: list[int]) -> None:
        self.frame = frame
        # What the echo of ``frame`` measures: the server's header is the client's minus the
        # 4-byte mask key.
        self.echo_size = len(frame) - 4
        self.host = host
        self.counter = counter
        self.handshake = bytearray()
        self.header = b""  # the start of a frame header cut by a read
        self.remaining = 0  # payload bytes of the current frame still to come
        self.data_frame = False  # the current frame ends a data message (an echo)
        self.open = asyncio.get_running_loop().create_future()
        self.running = True
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (self.host.encode(), key)
        )

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.handshake += data
            end = self.handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.handshake.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(bytes(self.handshake[:60]).decode(errors="replace")))
                return
            data = bytes(self.handshake[end + 4 :])
            self.open.set_result(None)
        self._skip_frames(data)

    def _skip_frames(self, data: bytes) -> None:
        if not self.remaining and not self.header and len(data) == self.echo_size and data[0] == 0x82:
            # The common case: exactly one whole echo in this read.
            self.counter[0] += 1
            if self.running:
                self.transport.write(self.frame)
            return
        position, size = 0, len(data)
        while position < size:
            if self.remaining:
                taken = min(self.remaining, size - position)
                position += taken
                self.remaining -= taken
                if not self.remaining:
                    self._frame_done()
                continue
            if self.header:
                data, position, size = self.header + data[position:], 0, len(self.header) + size - position
                self.header = b""
            if size - position < 2:
                self.header = data[position:]
                return
            first, length = data[position], data[position + 1] & 0x7F
            start = position + (2 if length < 126 else 4 if length == 126 else 10)
            if start > size:
                self.header = data[position:]
                return
            if length >= 126:
                length = int.from_bytes(data[position + 2 : start], "big")
            # Count finished data messages; control frames (pings) are not echoes.
            self.data_frame = bool(first & 0x80) and (first & 0x0F) < 0x8
            position, self.remaining = start, length
            if not length:
                self._frame_done()

    def _frame_done(self) -> None:
        if self.data_frame:
            self.counter[0] += 1
            if self.running:
                self.transport.write(self.frame)

    def start(self) -> None:
        """Send the first message; each echo then sends the next."""
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))


def client_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A TLS client context trusting ``ca_file``, or None for plain connections."""
    return None if ca_file is None else ssl.create_default_context(cafile=ca_file)


async def open_clients(
    host: str, port: int, count: int, payload: bytes, counter: list[int], ca_file: str | None = None
) -> list[EchoClient]:
    """Open ``count`` WebSockets (bounded by connect and handshake timeouts)."""
    loop = asyncio.get_running_loop()
    context = client_context(ca_file)
    frame = client_frame(payload)
    clients: list[EchoClient] = []

    def factory() -> EchoClient:
        return EchoClient(frame, host, counter)

    for _ in range(count):
        _, client = await asyncio.wait_for(loop.create_connection(factory, host, port, ssl=context), 10)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(client.open for client in clients)), HANDSHAKE_TIMEOUT)
    return clients


def close_clients(clients: list[EchoClient]) -> None:
    """Drop the connections (the servers see a client gone; fine for a benchmark)."""
    for client in clients:
        client.running = False
        if client.transport is not None:
            client.transport.close()


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def drive(load: Load, parent: Any) -> int:
    """One process's share: connect, say so, echo over the window the parent sends back."""
    counter = [0]
    clients = await open_clients(load.host, load.port, load.connections, b"x" * load.size, counter, load.ca_file)
    try:
        parent.send(("ready", 0))
        if not parent.poll(REPORT_TIMEOUT):
            raise RuntimeError("no start from the benchmark")
        window: Window = parent.recv()
        await _sleep_until(window.start_at)
        for client in clients:
            client.start()
        await _sleep_until(window.measure_from)
        first = counter[0]
        await _sleep_until(window.measure_to)
        return counter[0] - first
    finally:
        close_clients(clients)
        await asyncio.sleep(0.05)


def _child(load: Load, core: int | None, parent: Any) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        if load.uvloop:
            try:
                import uvloop
            except ImportError:
                count = asyncio.run(drive(load, parent))
            else:
                count = uvloop.run(drive(load, parent))
        else:
            count = asyncio.run(drive(load, parent))
        parent.send(("ok", count))
    except BaseException as exc:  # reported to the parent, which fails the run
        parent.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        parent.close()


def _answer(child: Any, expected: str) -> int:
    if not child.poll(REPORT_TIMEOUT):
        raise RuntimeError("a benchmark client process did not answer in time")
    try:
        status, value = child.recv()
    except EOFError:
        raise RuntimeError("a benchmark client process exited without answering") from None
    if status != expected:
        raise RuntimeError(f"benchmark client failed: {value}")
    return int(value)


def echo_load(
    loads: list[Load], core: int | None, warmup: float, duration: float, cpu_seconds: Callable[[], float]
) -> tuple[int, float, float]:
    """Run ``loads`` in as many processes pinned to ``core``.

    Returns the messages echoed in the measured window, its length in seconds and the
    server's CPU seconds over it (``cpu_seconds()`` read at both ends, in this process).
    """
    spawn = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    try:
        for load in loads:
            child, parent = spawn.Pipe()
            process = spawn.Process(target=_child, args=(load, core, parent), daemon=True)
            process.start()
            parent.close()
            pipes.append(child)
            processes.append(process)
        for child in pipes:
            _answer(child, "ready")
        start = time.monotonic() + 0.2
        window = Window(start, start + warmup, start + warmup + duration)
        for child in pipes:
            child.send(window)
        time.sleep(max(0.0, window.measure_from - time.monotonic()))
        cpu, started = cpu_seconds(), time.monotonic()
        time.sleep(max(0.0, window.measure_to - time.monotonic()))
        cpu, elapsed = cpu_seconds() - cpu, time.monotonic() - started
        return sum(_answer(child, "ok") for child in pipes), elapsed, cpu
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
