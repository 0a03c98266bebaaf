"""--send-timeout: a client that stops reading is dropped, and the app's send() fails."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.conftest import running_server

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")

CHUNK = b"x" * 65536


def make_streaming_app(outcome: dict[str, Any], done: threading.Event) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        try:
            for _ in range(2000):  # 128 MiB at most; the client reads none of it
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
                sent += len(CHUNK)
            outcome["result"] = "sent everything"
        except OSError as exc:
            outcome["result"] = type(exc).__name__
        finally:
            outcome["sent"] = sent
            done.set()

    return app


def test_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    outcome: dict[str, Any] = {}
    done = threading.Event()
    with running_server(make_streaming_app(outcome, done), send_timeout=0.5) as server:
        with socket.create_connection((server.host, server.port)) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            started = time.monotonic()
            assert done.wait(10), "the app's send() never failed: the stalled client was kept"
            elapsed = time.monotonic() - started
        assert outcome["result"] == "ClientDisconnected"
        # The app got far less than the 128 MiB it tried to send: it waited, then failed.
        assert outcome["sent"] < 32 * 1024 * 1024
        assert 0.4 < elapsed < 8
        deadline = time.monotonic() + 5
        while server.server.context.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.server.context.connections


def test_reading_client_is_not_dropped_by_send_timeout() -> None:
    outcome: dict[str, Any] = {}
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4194304")]})
        for _ in range(64):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        outcome["result"] = "complete"
        done.set()

    with running_server(app, send_timeout=0.3) as server:
        with socket.create_connection((server.host, server.port)) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            received = 0
            client.settimeout(10)
            while received < 4 * 1024 * 1024:
                data = client.recv(65536)
                assert data, "connection closed early"
                received += len(data)
                time.sleep(0.002)  # slow, but never stalled for the whole send timeout
        assert done.wait(5)
        assert outcome["result"] == "complete"
