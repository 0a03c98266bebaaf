"""Flow control both ways over real sockets: memory stays bounded whatever the peer does.

Upload: a client pushes 200 MiB at loopback speed to an app that reads at a fixed, much
lower rate. The server runs as a ``python -m gateway`` subprocess so its resident memory can
be sampled from /proc while the upload runs; it must stay flat because the server stops
reading from the socket when the app falls behind.

Download: an app sends 50 MiB to a client that does not read. The app's ``send()`` must block
once the socket buffers are full, and the client must later get every byte intact.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time
from typing import Any

import pytest

from tests.apps.process import gateway_process
from tests.conftest import running_server
from tests.raw import RawClient

MiB = 1024 * 1024
PIECE = 64 * 1024
UPLOAD = 200 * MiB
# The app reads at 25 MB/s: the upload takes about 8 s, while loopback could deliver it in
# well under a second. Without backpressure the server would buffer most of the 200 MiB.
READ_RATE = 25_000_000
# Bound on RSS growth during the upload. What the server legitimately holds is small: the
# read buffer (64 KiB) plus one socket read (asyncio reads up to 256 KiB), h11's buffer, and
# allocator slack from the bytes objects that pass through. 20 MB leaves room for that slack
# and for the sampling noise of a shared machine, and is a tenth of the upload.
MAX_GROWTH = 20 * MiB

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads VmRSS from /proc"),
    pytest.mark.usefixtures("http1_parser"),
]


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


class RSSSampler(threading.Thread):
    """Samples a process's RSS every 20 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_of(pid)
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            self.peak = max(self.peak, rss_of(self.pid))
            self.samples += 1

    def stop(self) -> int:
        self._stop_event.set()
        self.join(2)
        return self.peak


def upload(port: int, size: int, deadline: float) -> bytes:
    """POST ``size`` bytes in 64 KiB pieces to the slow reader; return the response body."""
    piece = b"u" * PIECE
    with RawClient(port, timeout=30) as client:
        client.send(
            b"POST /?rate=%d HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % (READ_RATE, size)
        )
        for _ in range(size // PIECE):
            assert time.monotonic() < deadline, "upload took too long"
            client.send(piece)
        data, _ = client.read_until_closed(timeout=5)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    return data.partition(b"\r\n\r\n")[2]


@pytest.mark.slow
def test_slow_reader_upload_keeps_server_memory_flat() -> None:
    with gateway_process(
        "tests.apps.http1:slow_reader",
        "--port",
        "0",
        "--max-body-size",
        "0",
        "--lifespan",
        "off",
        "--no-access-log",
        "--no-http2",
    ) as server:
        port = int(server.url.rsplit(":", 1)[1])
        pid = server.process.pid
        deadline = time.monotonic() + 40
        # Warm up: the first upload allocates what every upload needs (buffers, code paths).
        assert upload(port, 4 * MiB, deadline) == str(4 * MiB).encode()
        baseline = rss_of(pid)
        sampler = RSSSampler(pid)
        sampler.start()
        try:
            started = time.monotonic()
            body = upload(port, UPLOAD, deadline)
            elapsed = time.monotonic() - started
        finally:
            peak = sampler.stop()
    assert body == str(UPLOAD).encode()
    # The app really was the bottleneck (otherwise nothing here tests backpressure).
    assert elapsed > UPLOAD / READ_RATE * 0.8
    assert sampler.samples > 50
    growth = peak - baseline
    assert growth < MAX_GROWTH, f"server RSS grew by {growth / MiB:.1f} MiB during a 200 MiB upload"


DOWNLOAD = 50 * MiB


def chunk_for(index: int) -> bytes:
    return bytes([index % 251]) * PIECE


def test_send_blocks_while_client_does_not_read() -> None:
    sent = [0]
    finished = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", str(DOWNLOAD).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(DOWNLOAD // PIECE):
            await send({"type": "http.response.body", "body": chunk_for(index), "more_body": True})
            sent[0] += PIECE
        await send({"type": "http.response.body", "body": b""})
        finished.set()

    with running_server(app) as server:
        sock = socket.socket()
        try:
            # A small receive buffer keeps the kernel's share of the bytes in flight small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            # Wait until the app stops making progress: its send() is blocked.
            stalled_at = _wait_until_stalled(sent)
            assert not finished.is_set()
            # The socket buffers (a few MiB at most) hold what was sent; the rest waits in the app.
            assert stalled_at < 16 * MiB, f"the app sent {stalled_at / MiB:.1f} MiB to a client that reads nothing"
            body_hash, received = _read_response(sock)
        finally:
            sock.close()
        assert finished.wait(5)
    expected = hashlib.sha256()
    for index in range(DOWNLOAD // PIECE):
        expected.update(chunk_for(index))
    assert received == DOWNLOAD
    assert body_hash == expected.hexdigest()


def _wait_until_stalled(sent: list[int]) -> int:
    deadline = time.monotonic() + 10
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        elif time.monotonic() - since > 0.5 and last > 0:
            return last
    raise AssertionError(f"the app never stopped sending (at {sent[0]} bytes)")


def _read_response(sock: socket.socket) -> tuple[str, int]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, "closed before the response head"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: %d" % DOWNLOAD in head
    digest = hashlib.sha256(rest)
    received = len(rest)
    while received < DOWNLOAD:
        piece = sock.recv(1024 * 1024)
        assert piece, f"closed after {received} body bytes"
        digest.update(piece)
        received += len(piece)
    return digest.hexdigest(), received
