"""WebSocket close ordering over real sockets: HTTP/1.1 Upgrade and HTTP/2 extended CONNECT.

The client writes hand-built frames: a message, then in the same write a close frame or a
protocol error (a reserved bit, an unknown opcode, a stray continuation). The echo app's reply
must arrive before the server's close frame (RFC 6455 §5.5.1, §7.1.7).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Request, TextMessage

from tests.conftest import CertFiles, running_server
from tests.test_websocket_close import ENDINGS
from tests.test_websocket_e2e import RecordingApp
from tests.test_websocket_http2 import H2WebSocketClient, _connect
from tests.test_websocket_stream import _masked


def _http1_exchange(port: int, data: bytes) -> list[Event]:
    """Upgrade, write ``data`` at once, and parse everything until the server closes."""
    client = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(client.send(Request(host="localhost", target="/")))
        events: list[Event] = []
        received = b""
        deadline = time.monotonic() + 5
        sent = False
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            client.receive_data(chunk)
            events += client.events()
            if not sent and any(isinstance(event, TextMessage) for event in events):
                sock.sendall(data)  # after the app's first message: it has accepted
                sent = True
        else:
            pytest.fail("the server did not close the connection")
    assert isinstance(events[0], AcceptConnection)
    return events[1:]


def _http2_exchange(server: Any, cert_files: CertFiles, data: bytes) -> list[Event]:
    """Open a WebSocket stream, write ``data`` in one DATA frame, read until the stream ends.

    A server that does not end the stream after its close frame leaves the read to time out.
    """
    with _connect(server, False, cert_files) as sock:
        client = H2WebSocketClient(sock, "http")
        stream_id, status = client.connect("/")
        assert status == 200
        events = list(client.events(stream_id, 1))  # the app's scope summary
        client.h2.send_data(stream_id, data)
        sock.sendall(client.h2.data_to_send())
        # Two frames, then the stream's end stops the wait for a third.
        events += client.events(stream_id, 3)
        return events


@pytest.mark.parametrize("transport", ["http/1.1", "h2"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_reply_goes_out_before_the_close_frame(transport: str, ending: str, cert_files: CertFiles) -> None:
    tail, code = ENDINGS[ending]
    app = RecordingApp()
    with running_server(app) as server:
        data = _masked(0x81, b"hello") + tail
        if transport == "http/1.1":
            events = _http1_exchange(server.port, data)
        else:
            events = _http2_exchange(server, cert_files, data)
        assert app.done.wait(5)
    assert [type(event) for event in events] == [TextMessage, TextMessage, CloseConnection], events
    reply, close = events[1], events[2]
    assert isinstance(reply, TextMessage) and reply.data == "hello"
    assert isinstance(close, CloseConnection) and close.code == code
    assert [message["type"] for message in app.messages] == ["websocket.receive", "websocket.disconnect"]
    assert app.messages[-1]["code"] == code
