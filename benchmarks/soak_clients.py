"""The clients of ``benchmarks/soak.py``: well-behaved ones that are timed, hostile ones that are counted.

Each client is a function run in its own thread until ``stop`` is set; every socket read has
a timeout, so each returns within seconds of ``stop``. Well-behaved clients record a
latency per request (or per message) and any failure, which fails the soak; hostile clients
count their cycles (each ends when the server cuts them off, or when they give up).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import select
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import websockets

BIG = 20 * 1000 * 1000  # bytes per upload and download


@dataclasses.dataclass
class Target:
    """Where the server listens and how to trust its certificate."""

    port: int
    ca_file: Path

    def context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A fresh client context (httpx sets ALPN on the one it gets)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    def tls_socket(self, timeout: float = 10.0) -> ssl.SSLSocket:
        """A TLS connection speaking HTTP/1.1."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.context(["http/1.1"]).wrap_socket(raw, server_hostname="localhost")

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


class Tally:
    """Counters shared by the client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.failures: collections.Counter[str] = collections.Counter()
        self.cycles: collections.Counter[str] = collections.Counter()
        self.completed = 0  # well-behaved requests and messages, for the req/s curve

    def ok(self, kind: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self.latencies[kind].append(seconds)
            self.completed += count

    def failed(self, kind: str, exc: BaseException | str) -> None:
        with self._lock:
            self.failures[f"{kind}: {exc if isinstance(exc, str) else type(exc).__name__}"] += 1

    def cycle(self, kind: str) -> None:
        with self._lock:
            self.cycles[kind] += 1


Client = Callable[[Target, Tally, threading.Event], None]

# -- well-behaved -----------------------------------------------------------------------------


def keep_alive(target: Target, tally: Tally, stop: threading.Event) -> None:
    """HTTP/1.1 keep-alive (httpx): one small request after another."""
    with httpx.Client(base_url=target.url, verify=target.context(), timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = client.get("/hello")
                if response.status_code != 200:
                    tally.failed("h1 keep-alive", f"status {response.status_code}")
                else:
                    tally.ok("h1 keep-alive", time.perf_counter() - started)
            except httpx.HTTPError as exc:
                tally.failed("h1 keep-alive", exc)
            stop.wait(0.005)


def pipelined(target: Target, tally: Tally, stop: threading.Event, depth: int = 8) -> None:
    """HTTP/1.1 pipelining: ``depth`` requests written at once, then their responses read."""
    while not stop.is_set():
        try:
            with target.tls_socket() as sock:
                for _ in range(200):  # then a fresh connection
                    if stop.is_set():
                        return
                    started = time.perf_counter()
                    sock.sendall(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n" * depth)
                    _read_responses(sock, depth)
                    tally.ok("h1 pipelined x8", time.perf_counter() - started, depth)
                    stop.wait(0.02)
        except OSError as exc:
            tally.failed("h1 pipelined x8", exc)
            stop.wait(0.5)


def _read_responses(sock: ssl.SSLSocket, count: int) -> None:
    """Read ``count`` complete 200 responses with a content-length (what /hello sends)."""
    buffer = b""
    for _ in range(count):
        while b"\r\n\r\n" not in buffer:
            buffer += _recv(sock)
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200 "):
            raise ConnectionError(f"unexpected {head[:30]!r}")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(buffer) < length:
            buffer += _recv(sock)
        buffer = buffer[length:]
    if buffer:
        raise ConnectionError("more bytes than the responses")


def _recv(sock: ssl.SSLSocket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("closed mid-response")
    return data


def h2load(target: Target, tally: Tally, stop: threading.Event) -> None:
    """HTTP/2 multiplexed: h2load runs of 400 requests, 2 connections x 8 streams, 100 req/s each."""
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "requests.log"
        while not stop.is_set():
            log.unlink(missing_ok=True)  # h2load appends to it
            command = ["h2load", "-n", "400", "-c", "2", "-m", "8", "--rps", "100", f"--log-file={log}"]
            done = subprocess.run([*command, f"https://127.0.0.1:{target.port}/hello"], capture_output=True, timeout=60)
            summary = done.stdout.decode(errors="replace")
            if done.returncode != 0 or " 400 succeeded" not in summary:
                line = next((line for line in summary.splitlines() if line.startswith("requests:")), "no summary")
                tally.failed("h2 h2load", line.strip())
            for row in log.read_text().splitlines() if log.exists() else ():
                _, status, micros = row.split("\t")[:3]
                if status == "200":
                    tally.ok("h2 h2load", int(micros) / 1e6)


def websocket_echo(compressed: bool) -> Client:
    """WebSocket echo of 1 KiB text messages, with or without permessage-deflate."""
    kind = "ws echo deflate" if compressed else "ws echo"

    def run(target: Target, tally: Tally, stop: threading.Event) -> None:
        async def main() -> None:
            url = f"wss://localhost:{target.port}/ws"
            message = "soak " * 200
            while not stop.is_set():
                try:
                    async with websockets.connect(
                        url, ssl=target.context(), compression="deflate" if compressed else None, open_timeout=10
                    ) as ws:
                        for _ in range(2000):  # then a fresh connection
                            if stop.is_set():
                                break
                            started = time.perf_counter()
                            await ws.send(message)
                            if await asyncio.wait_for(ws.recv(), 10) != message:
                                tally.failed(kind, "wrong echo")
                            tally.ok(kind, time.perf_counter() - started)
                            await asyncio.sleep(0.01)
                except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                    tally.failed(kind, exc)
                    await asyncio.sleep(0.5)

        asyncio.run(main())

    return run


def big_transfers(target: Target, tally: Tally, stop: threading.Event) -> None:
    """A 20 MB upload, then a 20 MB download, every 10 s (the time each took is recorded)."""

    def body() -> Iterator[bytes]:
        piece = bytes(64 * 1024)
        for start in range(0, BIG, len(piece)):
            yield piece[: min(len(piece), BIG - start)]

    with httpx.Client(base_url=target.url, verify=target.context(), timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = client.post("/upload", content=body())
                if response.text != str(BIG):
                    tally.failed("20 MB upload", f"answer {response.text[:40]!r}")
                else:
                    tally.ok("20 MB upload", time.perf_counter() - started)
                started = time.perf_counter()
                received = 0
                with client.stream("GET", f"/download?size={BIG}") as stream:
                    for chunk in stream.iter_raw():
                        received += len(chunk)
                if received != BIG:
                    tally.failed("20 MB download", f"{received} bytes")
                else:
                    tally.ok("20 MB download", time.perf_counter() - started)
            except httpx.HTTPError as exc:
                tally.failed("20 MB transfer", exc)
            stop.wait(10)


# -- hostile ----------------------------------------------------------------------------------


def _held(kind: str, count: int, opener: Callable[[Target], socket.socket], nudge: bytes) -> Client:
    """Keep ``count`` connections open; send ``nudge`` on each every second until the server cuts it."""

    def run(target: Target, tally: Tally, stop: threading.Event) -> None:
        sockets: list[socket.socket] = []
        try:
            while not stop.is_set():
                while len(sockets) < count:
                    try:
                        sockets.append(opener(target))
                    except OSError:
                        tally.failed(kind, "could not connect")
                        stop.wait(1)
                        break
                readable, _, _ = select.select(sockets, [], [], 1.0)
                for sock in sockets[:]:
                    try:
                        if sock in readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                            sock.recv(65536)  # the server's 408, or its close
                            raise ConnectionError
                        if nudge:
                            sock.send(nudge)
                    except (OSError, ssl.SSLError):
                        sock.close()
                        sockets.remove(sock)
                        tally.cycle(kind)
        finally:
            for sock in sockets:
                sock.close()

    return run


def _slowloris_head(target: Target) -> socket.socket:
    sock = target.tls_socket()
    sock.sendall(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n")
    return sock


def _stalled_body(target: Target) -> socket.socket:
    sock = target.tls_socket()
    sock.sendall(b"POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\n" + bytes(1000))
    return sock


def _silent_tcp(target: Target) -> socket.socket:
    # A TLS handshake that never starts: the server's --tls-handshake-timeout ends it.
    return socket.create_connection(("127.0.0.1", target.port), timeout=10)


slowloris = _held("slowloris head", 8, _slowloris_head, b"x")
stalled_bodies = _held("stalled body", 4, _stalled_body, b"")
silent_handshakes = _held("TLS handshake never sent", 4, _silent_tcp, b"")


def vanishing(target: Target, tally: Tally, stop: threading.Event) -> None:
    """Start a 20 MB download, read 256 KiB, then reset (RST) or just close, alternately."""
    number = 0
    while not stop.is_set():
        number += 1
        try:
            sock = target.tls_socket()
            sock.sendall(b"GET /download?size=%d HTTP/1.1\r\nhost: localhost\r\n\r\n" % BIG)
            received = 0
            while received < 256 * 1024:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
            if number % 2:
                # SO_LINGER 0: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            tally.cycle("reset mid-response" if number % 2 else "vanished mid-response")
        except OSError as exc:
            tally.failed("vanishing client", exc)
        stop.wait(0.3)


def abandoned_handshakes(target: Target, tally: Tally, stop: threading.Event) -> None:
    """Send half a ClientHello, then close."""
    while not stop.is_set():
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = target.context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        try:
            with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
                sock.sendall(hello[: len(hello) // 2])
            tally.cycle("TLS handshake abandoned")
        except OSError as exc:
            tally.failed("abandoned handshake", exc)
        stop.wait(0.2)


WELL_BEHAVED: dict[str, Client] = {
    "h1 keep-alive": keep_alive,
    "h1 pipelined": pipelined,
    "h2 h2load": h2load,
    "ws echo": websocket_echo(False),
    "ws echo deflate": websocket_echo(True),
    "20 MB transfers": big_transfers,
}
HOSTILE: dict[str, Client] = {
    "slowloris": slowloris,
    "stalled bodies": stalled_bodies,
    "silent handshakes": silent_handshakes,
    "vanishing": vanishing,
    "abandoned handshakes": abandoned_handshakes,
}
