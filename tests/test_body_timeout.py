"""--body-timeout: a client that stalls mid-body is dropped; a slow app is not held against it."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from tests.conftest import running_server


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
