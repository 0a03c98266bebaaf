"""HTTP/1.1 end to end: the real server on 127.0.0.1, httpx, curl and raw sockets as clients."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from tests.apps.http1 import FAILURES, broken, echo, read_body, respond
from tests.conftest import CertFiles, RunningServer, running_server
from tests.raw import RawClient, get

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """caplog for ``gateway.*`` (gateway.logs.configure_logging, run by other tests, stops propagation)."""
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="gateway")
    return caplog


@pytest.fixture(scope="module")
def echo_server(http1_parser: str) -> Iterator[RunningServer]:
    with running_server(echo) as server:
        yield server


@pytest.fixture(scope="module")
def broken_server(http1_parser: str) -> Iterator[RunningServer]:
    with running_server(broken) as server:
        yield server


def test_keep_alive_reuses_the_connection(echo_server: RunningServer) -> None:
    with httpx.Client(base_url=echo_server.url) as client:
        first = client.get("/caf%C3%A9", params={"q": "a b"}).json()
        second = client.post("/two", content=b"x" * 5000).json()
    assert first["path"] == "/café" and first["raw_path"] == "/caf%C3%A9"
    assert first["query_string"] == "q=a+b"
    assert first["http_version"] == "1.1" and first["scheme"] == "http"
    assert second["body_length"] == 5000
    # Same client port: the second request came over the first one's connection.
    assert first["client_port"] == second["client_port"]


def test_tls_scheme_and_request(cert_files: CertFiles) -> None:
    with running_server(echo, certfile=str(cert_files.cert), keyfile=str(cert_files.key), http2=False) as server:
        with httpx.Client(base_url=server.url, verify=cert_files.client_context) as client:
            report = client.post("/secure", content=b"abc").json()
    assert report["scheme"] == "https" and report["body_length"] == 3


def test_pipelined_requests_on_a_socket(echo_server: RunningServer) -> None:
    requests = b"".join(
        b"GET /p%d HTTP/1.1\r\nhost: x\r\n\r\n" % index
        if index != 1
        else b"POST /p1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
        for index in range(3)
    )
    with RawClient(echo_server.port) as client:
        client.send(requests)
        parser = h11.Connection(h11.CLIENT)
        paths = []
        for _ in range(3):
            parser.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            parser.send(h11.EndOfMessage())
            body = b""
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    parser.receive_data(client.sock.recv(65536))
                elif type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    break
            report = json.loads(body)
            paths.append((report["path"], report["body_length"]))
            parser.start_next_cycle()
    assert paths == [("/p0", 0), ("/p1", 3), ("/p2", 0)]


def test_http10_request_closes(echo_server: RunningServer) -> None:
    with RawClient(echo_server.port) as client:
        client.send(b"GET /old HTTP/1.0\r\n\r\n")
        data, closed = client.read_until_closed()
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["http_version"] == "1.0"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_expect_continue(echo_server: RunningServer, tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * 20000)
    result = subprocess.run(
        ["curl", "-sS", "-v", "--http1.1", "-H", "Expect: 100-continue", "--expect100-timeout", "5",
         "--data-binary", f"@{upload}", f"{echo_server.url}/upload"],
        capture_output=True,
        text=True,
        timeout=20,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout)["body_length"] == 20000


def test_app_sees_disconnect_when_client_resets() -> None:
    seen: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        # The response is not sent: the next message can only be the client leaving.
        seen.append((await asyncio.wait_for(receive(), 5))["type"])
        done.set()

    with running_server(app) as server:
        with RawClient(server.port) as client:
            client.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
            assert not done.wait(0.2)
            # SO_LINGER 0: close() sends RST, the way a killed client's connection ends.
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert done.wait(4)
    assert seen == ["http.disconnect"]


@pytest.mark.parametrize("name", list(FAILURES))
def test_app_errors(name: str, broken_server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    _, expected, traceback = FAILURES[name]
    with RawClient(broken_server.port) as client:
        client.request(target=f"/{name}")
        if expected == "500":
            response, body = client.response()
            assert response.status_code == 500 and body == b"Internal Server Error"
        else:
            # A cut-off body: the client must see the connection end before the message does.
            with pytest.raises((h11.RemoteProtocolError, ConnectionError)):
                client.response()
    # The server still serves a new connection afterwards.
    assert get(broken_server.port, "/ok") == (200, b"ok")
    errors = [record for record in logs.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert (errors[0].exc_info is not None) is traceback
    assert name in errors[0].getMessage()


def test_app_error_keeps_other_connections_alive(broken_server: RunningServer) -> None:
    with RawClient(broken_server.port) as keeper, RawClient(broken_server.port) as failing:
        keeper.request(target="/ok")
        assert keeper.response()[0].status_code == 200
        failing.request(target="/raise-after-start")
        with pytest.raises((h11.RemoteProtocolError, ConnectionError)):
            failing.response()
        keeper.request(target="/ok")
        assert keeper.response()[1] == b"ok"


def test_unread_body_is_discarded_and_connection_kept() -> None:
    clients: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            clients.append(scope["client"])
            # Time for the whole body to arrive and pause reading (the app never reads it).
            await asyncio.sleep(0.05)
            await respond(send, b"answered early")

    with running_server(app) as server, httpx.Client(base_url=server.url) as client:
        first = client.post("/", content=b"q" * 100_000)
        second = client.get("/")
    assert first.text == second.text == "answered early"
    # The second request came on the same connection (same client port): it was kept.
    assert len(clients) == 2 and clients[0] == clients[1]


def test_half_closed_client_still_gets_its_response(echo_server: RunningServer) -> None:
    # RFC 9112 §9.6: a client may close its sending side after the request; the answer is owed.
    with RawClient(echo_server.port) as client:
        client.send(b"POST /half HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd")
        client.sock.shutdown(socket.SHUT_WR)
        data, closed = client.read_until_closed()
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    report = json.loads(body)
    assert report["path"] == "/half" and report["body_length"] == 4


def test_half_close_tells_a_waiting_app_disconnect_and_its_answer_still_arrives() -> None:
    # A long-poll app waits in receive() for http.disconnect; a client that closes its
    # sending side must wake it (the usual case: the client left), yet whatever the app
    # answers is still written to a client that only half-closed.
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                break
        await respond(send, b"bye")

    with running_server(app) as server, RawClient(server.port) as client:
        client.send(b"GET /poll HTTP/1.1\r\nhost: x\r\n\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        data, closed = client.read_until_closed()
    assert seen == ["http.request", "http.disconnect"]
    assert closed
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"bye")
