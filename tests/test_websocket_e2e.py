"""WebSocket end to end: a real server on 127.0.0.1, plain and TLS, the ``websockets`` library as client."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from tests.conftest import CertFiles, running_server

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")


class RecordingApp:
    """Echo app that reports its scope first and records what it received."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.done = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        try:
            await self._serve(scope, receive, send)
        finally:
            self.done.set()

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/reject":
            await send({"type": "websocket.close"})
            return
        chosen = scope["subprotocols"][0] if scope["subprotocols"] else None
        await send({"type": "websocket.accept", "subprotocol": chosen})
        summary = {key: scope[key] for key in ("scheme", "http_version", "path", "subprotocols")}
        await send({"type": "websocket.send", "text": json.dumps(summary)})
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "websocket.disconnect":
                return
            reply = {k: v for k, v in message.items() if k in ("bytes", "text") and v is not None}
            await send({"type": "websocket.send", **reply})


def _client_ssl(url: str, cert_files: CertFiles) -> ssl.SSLContext | None:
    return cert_files.client_context if url.startswith("wss") else None


@pytest.mark.parametrize("tls", [False, True])
def test_echo_over_plain_and_tls_with_deflate(tls: bool, cert_files: CertFiles) -> None:
    app = RecordingApp()
    options: dict[str, Any] = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)} if tls else {}
    with running_server(app, **options) as server:
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{server.port}/echo?x=1"

        async def client() -> None:
            async with websockets.connect(
                url, ssl=_client_ssl(url, cert_files), subprotocols=["v2.chat"], max_size=None
            ) as ws:
                assert ws.subprotocol == "v2.chat"
                assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
                summary = json.loads(await ws.recv())
                assert summary == {
                    "scheme": "wss" if tls else "ws",
                    "http_version": "1.1",
                    "path": "/echo",
                    "subprotocols": ["v2.chat"],
                }
                big = bytes(range(256)) * 4096  # 1 MiB, poorly compressible patterns included
                for message in ("hello", b"\x00\x01", "", b"", big, "é" * 50_000):
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send(["frag", "ment", "ed"])  # one message in three frames
                assert await ws.recv() == "fragmented"
                await ws.close(4321, "client done")

        asyncio.run(client())
        assert app.done.wait(5)
    assert app.messages[-1] == {"type": "websocket.disconnect", "code": 4321, "reason": "client done"}


def test_without_deflate_option_nothing_is_negotiated() -> None:
    app = RecordingApp()
    with running_server(app, ws_per_message_deflate=False) as server:

        async def client() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws:
                assert "sec-websocket-extensions" not in ws.response.headers
                await ws.recv()
                # Uncompressed frames take the fast path, including ones spanning many reads.
                for message in ("plain", b"", bytes(range(256)) * 8192, "ü" * 300_000, b"x" * 70_000):
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send([b"frag", b"mented"])
                assert await ws.recv() == b"fragmented"

        asyncio.run(client())


def test_close_before_accept_is_403_and_oversize_is_1009() -> None:
    app = RecordingApp()
    with running_server(app, ws_max_message_size=1000) as server:

        async def client() -> None:
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(f"ws://127.0.0.1:{server.port}/reject"):
                    pass
            assert refused.value.response.status_code == 403
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.recv()
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000
                await ws.send("y" * 1001)
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.close_code == 1009

        asyncio.run(client())
        assert app.done.wait(5)
    assert app.messages[-1]["code"] == 1009


def test_graceful_shutdown_sends_1001() -> None:
    app = RecordingApp()
    with running_server(app, graceful_timeout=5) as server:

        async def client() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.recv()
                started = time.monotonic()
                stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1001
                await stopping
                # The close handshake ended the wait, not the 5 s graceful timeout.
                assert time.monotonic() - started < 4

        asyncio.run(client())
    assert server.exit_code == [0]
    assert app.messages[-1]["type"] == "websocket.disconnect" and app.messages[-1]["code"] == 1001


def test_peer_that_ignores_pings_is_closed() -> None:
    app = RecordingApp()
    with running_server(app, ws_ping_interval=0.1, ws_ping_timeout=0.2) as server:
        client = WSConnection(ConnectionType.CLIENT)
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(client.send(Request(host="localhost", target="/")))
            # Read until the socket closes; never answer the server's pings.
            received = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            else:
                pytest.fail("the server kept a peer that never answered pings")
        client.receive_data(received)
        assert isinstance(next(client.events()), AcceptConnection)
        assert app.done.wait(5)
    assert app.messages[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


@pytest.mark.parametrize(
    "parameters",
    [
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 10, "client_max_window_bits": 9},
        {"server_max_window_bits": 15, "client_max_window_bits": True},
        {"server_no_context_takeover": True, "server_max_window_bits": 12},
    ],
)
def test_deflate_parameters_with_an_independent_client(parameters: dict[str, Any]) -> None:
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    app = RecordingApp()
    with running_server(app) as server:

        async def client() -> None:
            factory = ClientPerMessageDeflateFactory(**parameters)
            url = f"ws://127.0.0.1:{server.port}/"
            async with websockets.connect(url, extensions=[factory], compression=None, max_size=None) as ws:
                agreed = ws.response.headers["sec-websocket-extensions"]
                for name, value in parameters.items():
                    if name.startswith("server"):
                        # The server must honour what the client asked of it (RFC 7692 §7.1).
                        assert name in agreed and (value is True or f"{name}={value}" in agreed)
                await ws.recv()
                # Repetitive text compresses; with context takeover later messages reuse it.
                for message in ["abc" * 5000, "abc" * 5000, bytes(100_000), "short", b"\x00\xff" * 40_000]:
                    await ws.send(message)
                    assert await ws.recv() == message

        asyncio.run(client())
