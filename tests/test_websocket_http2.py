"""WebSocket over HTTP/2 (RFC 8441) end to end, with a client built here from h2 + wsproto.

The client opens real sockets to 127.0.0.1 (TLS with ALPN "h2", or plain with prior
knowledge), sends an extended CONNECT with ``:protocol websocket``, and runs wsproto's
post-handshake connection over the stream's DATA frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage
from wsproto.extensions import PerMessageDeflate

from tests.conftest import CertFiles, running_server
from tests.test_websocket_e2e import RecordingApp


class H2WebSocketClient:
    """One HTTP/2 connection that can open WebSocket streams (RFC 8441 §4)."""

    def __init__(self, sock: socket.socket, scheme: str) -> None:
        self.sock = sock
        self.scheme = scheme
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.frames: dict[int, FrameConnection] = {}
        # The response fields of each stream opened by connect().
        self.responses: dict[int, dict[bytes, bytes]] = {}
        self.pending: list[h2.events.Event] = []
        self.server_settings: dict[int, int] = {}
        self.goaway_received = False
        self._buffer = b""
        while not self.server_settings:
            self._read()

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        for event in self.h2.receive_data(self._without_goaway(data)):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.server_settings.update({code: change.new_value for code, change in event.changed_settings.items()})
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
                self.pending.append(event)
            else:
                self.pending.append(event)
        self.sock.sendall(self.h2.data_to_send())

    def _without_goaway(self, data: bytes) -> bytes:
        # h2's client state machine refuses every frame after a GOAWAY, although RFC 9113
        # §6.8 lets streams up to its last stream id go on; hide it from h2 and note it.
        self._buffer += data
        kept = b""
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            frame, self._buffer = self._buffer[: 9 + length], self._buffer[9 + length :]
            if frame[3] == 0x7:
                self.goaway_received = True
            else:
                kept += frame
        return kept

    def connect(self, path: str, *, deflate: bool = False, subprotocols: str | None = None) -> tuple[int, int]:
        """Open a WebSocket stream; return its id and the response status."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", self.scheme.encode()),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"sec-websocket-version", b"13"),
        ]
        if deflate:
            headers.append((b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"))
        if subprotocols:
            headers.append((b"sec-websocket-protocol", subprotocols.encode()))
        self.h2.send_headers(stream_id, headers)
        self.sock.sendall(self.h2.data_to_send())
        while True:
            for event in list(self.pending):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    self.pending.remove(event)
                    fields = dict(event.headers or ())
                    self.responses[stream_id] = fields
                    extensions = []
                    if b"sec-websocket-extensions" in fields:
                        extension = PerMessageDeflate()
                        extension.finalize(fields[b"sec-websocket-extensions"].decode())
                        extensions.append(extension)
                    self.frames[stream_id] = FrameConnection(ConnectionType.CLIENT, extensions)
                    return stream_id, int(fields[b":status"])
            self._read()

    def send(self, stream_id: int, event: Event) -> None:
        self.h2.send_data(stream_id, self.frames[stream_id].send(event))
        self.sock.sendall(self.h2.data_to_send())

    def events(self, stream_id: int, count: int) -> Iterator[Event]:
        """Read until ``count`` WebSocket events arrived on ``stream_id`` (or its end)."""
        frames = self.frames[stream_id]
        produced = 0
        while produced < count:
            for event in list(self.pending):
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                self.pending.remove(event)
                if isinstance(event, h2.events.DataReceived):
                    frames.receive_data(event.data)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    produced = count
            for ws_event in frames.events():
                produced += 1
                yield ws_event
            if produced < count:
                self._read()


def _connect(server: Any, tls: bool, cert_files: CertFiles) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    if not tls:
        return sock
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    context.set_alpn_protocols(["h2"])
    wrapped = context.wrap_socket(sock, server_hostname="localhost")
    assert wrapped.selected_alpn_protocol() == "h2"
    return wrapped


@pytest.mark.parametrize("tls", [False, True])
def test_websocket_over_http2(tls: bool, cert_files: CertFiles) -> None:
    app = RecordingApp()
    options: dict[str, Any] = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)} if tls else {}
    with running_server(app, **options) as server, _connect(server, tls, cert_files) as sock:
        client = H2WebSocketClient(sock, "https" if tls else "http")
        assert client.server_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        stream_id, status = client.connect("/chat?x=1", deflate=True, subprotocols="v1, v2")
        assert status == 200
        assert client.frames[stream_id]._proto.extensions, "permessage-deflate was not negotiated"
        (summary,) = client.events(stream_id, 1)
        assert isinstance(summary, TextMessage)
        assert summary.data == (
            '{"scheme": "%s", "http_version": "2", "path": "/chat", "subprotocols": ["v1", "v2"]}'
            % ("wss" if tls else "ws")
        )
        big = b"\x01\x02" * 300_000  # larger than the stream window: flow control both ways
        for message in ("hello", b"", big):
            event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
            client.send(stream_id, event)
            assembled: Any = None
            for reply in client.events(stream_id, 1):
                assembled = reply.data  # type: ignore[attr-defined]
                while not reply.message_finished:  # type: ignore[attr-defined]
                    (reply,) = client.events(stream_id, 1)
                    assembled += reply.data  # type: ignore[attr-defined]
            assert assembled == message
        client.send(stream_id, CloseConnection(code=4000, reason="h2 done"))
        (closing,) = client.events(stream_id, 1)
        assert isinstance(closing, CloseConnection) and closing.code == 4000
        assert app.done.wait(5)
    assert app.messages[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "h2 done"}


def test_rejection_and_shutdown_over_http2(cert_files: CertFiles) -> None:
    app = RecordingApp()
    with running_server(app, graceful_timeout=5) as server, _connect(server, False, cert_files) as sock:
        client = H2WebSocketClient(sock, "http")
        _, status = client.connect("/reject")
        assert status == 403
        stream_id, status = client.connect("/")
        assert status == 200
        list(client.events(stream_id, 1))  # the scope summary
        server.loop.call_soon_threadsafe(server.server.request_shutdown)
        (closing,) = client.events(stream_id, 1)
        assert isinstance(closing, CloseConnection) and closing.code == 1001
        # No GOAWAY while the stream is open (docs/http2.md): it follows the close handshake.
        assert not client.goaway_received
        client.send(stream_id, closing.response())
        assert app.done.wait(5)
        for _ in range(50):
            if client.goaway_received:
                break
            client._read()
        assert client.goaway_received
        server.thread.join(5)
        assert not server.thread.is_alive()
    assert app.messages[-1]["type"] == "websocket.disconnect" and app.messages[-1]["code"] == 1001


def test_http2_window_follows_the_app(cert_files: CertFiles) -> None:
    release = threading.Event()
    received: list[int] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        while (message := await receive())["type"] != "websocket.disconnect":
            received.append(len(message["bytes"]))

    with running_server(slow_app) as server, _connect(server, False, cert_files) as sock:
        client = H2WebSocketClient(sock, "http")
        stream_id, _ = client.connect("/")
        message = BytesMessage(data=b"m" * 4000)
        sent = 0
        sock.settimeout(0.3)
        # Send while the stream window allows, collecting WINDOW_UPDATEs, until none come.
        while sent < 500:
            while client.h2.local_flow_control_window(stream_id) > 4100 and sent < 500:
                client.send(stream_id, message)
                sent += 1
            try:
                client._read()
            except TimeoutError:
                break
        # The app receives nothing, so the server stopped opening the window.
        assert sent < 100 and client.h2.local_flow_control_window(stream_id) <= 4100
        release.set()
        deadline = time.monotonic() + 5
        while len(received) < sent and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                client._read()
        assert received == [4000] * sent
        # Reading resumed: the window opened again for more.
        assert client.h2.local_flow_control_window(stream_id) > 4100


def test_http2_stream_reset_gives_the_app_a_disconnect(cert_files: CertFiles) -> None:
    app = RecordingApp()
    with running_server(app) as server, _connect(server, False, cert_files) as sock:
        client = H2WebSocketClient(sock, "http")
        stream_id, _ = client.connect("/")
        list(client.events(stream_id, 1))  # the scope summary
        client.h2.reset_stream(stream_id)
        sock.sendall(client.h2.data_to_send())
        # The app was not cancelled: it received websocket.disconnect and returned itself.
        assert app.done.wait(5)
    assert app.messages == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
