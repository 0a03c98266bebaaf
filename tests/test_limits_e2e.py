"""Edge limits end to end: real sockets on loopback, HTTP/1.1, HTTP/2 and WebSocket clients.

Client addresses other than 127.0.0.1 come from binding the client socket to another
loopback address (127.0.0.0/8 is all loopback on Linux), so per-address limits see many
distinct clients without leaving the machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.events
import h11
import pytest

from gateway.config import Config
from gateway.limits import ConcurrencyLimit, ConnectionLimits, RateLimiter, RequestLimits
from gateway.server import bind_sockets
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import CertFiles, RunningServer, running_server
from tests.raw import RawClient
from tests.test_websocket_http2 import H2WebSocketClient

LINUX = sys.platform.startswith("linux")
needs_loopback_range = pytest.mark.skipif(not LINUX, reason="only Linux routes all of 127.0.0.0/8 to loopback")

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def _wait_for(event: threading.Event, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if event.is_set():
            return
        await asyncio.sleep(0.01)


class HoldingApp:
    """``/hold`` requests and WebSockets stay in the app until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            self.entered += 1
            await _wait_for(self.release)
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        if path == "/hold":
            self.entered += 1
            await _wait_for(self.release)
        elif path == "/boom":
            raise RuntimeError("the app failed (expected by the test)")
        elif path == "/until-disconnect":
            self.entered += 1
            for _ in range(1000):
                if (await receive())["type"] == "http.disconnect":
                    return
        body = scope["client"][0].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def concurrency(server: RunningServer) -> ConcurrencyLimit:
    limits = server.server.context.request_limits
    assert limits is not None and limits.concurrency is not None
    return limits.concurrency


def rate_limiter(server: RunningServer) -> RateLimiter:
    limits = server.server.context.request_limits
    assert limits is not None and limits.rate is not None
    return limits.rate


def connection_limits(server: RunningServer) -> ConnectionLimits:
    limits = server.server.context.connection_limits
    assert limits is not None
    return limits


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def exchange(sock: socket.socket, path: str = "/", method: str = "GET") -> tuple[h11.Response, bytes]:
    """One request on ``sock`` (keep-alive): the response head and body."""
    client = h11.Connection(h11.CLIENT)
    sock.sendall(client.send(h11.Request(method=method, target=path, headers=[("host", "localhost")])) or b"")
    sock.sendall(client.send(h11.EndOfMessage()) or b"")
    response: h11.Response | None = None
    body = b""
    for _ in range(1000):
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, body
        elif isinstance(event, h11.ConnectionClosed):
            break
    raise ConnectionError("no complete response")


def get(port: int, path: str = "/", source: str = "127.0.0.1") -> tuple[int, dict[bytes, bytes], bytes]:
    with connect(port, source) as sock:
        response, body = exchange(sock, path)
        return response.status_code, dict(response.headers), body


def websocket_status(sock: socket.socket) -> int:
    sock.sendall(UPGRADE)
    head = b""
    for _ in range(100):
        if b"\r\n\r\n" in head:
            break
        piece = sock.recv(65536)
        if not piece:
            break
        head += piece
    return int(head[9:12])


def h2_client(port: int) -> H2WebSocketClient:
    return H2WebSocketClient(connect(port), "http")


def h2_send(client: H2WebSocketClient, path: str) -> int:
    stream_id = client.h2.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path.encode()), (b":authority", b"localhost")]
    client.h2.send_headers(stream_id, headers, end_stream=True)
    client.sock.sendall(client.h2.data_to_send())
    return stream_id


def h2_response(client: H2WebSocketClient, stream_id: int) -> tuple[int, dict[bytes, bytes], bytes]:
    status, headers, body = 0, {}, b""
    for _ in range(1000):
        for event in list(client.pending):
            if getattr(event, "stream_id", None) != stream_id:
                continue
            client.pending.remove(event)
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers or ())
                status = int(headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data or b""
            elif isinstance(event, h2.events.StreamEnded):
                return status, headers, body
            elif isinstance(event, h2.events.StreamReset):
                raise ConnectionError(f"stream {stream_id} reset")
        client._read()
    raise ConnectionError("no complete response")


# -- --limit-concurrency ------------------------------------------------------------------


def test_concurrency_limit_over_http1_answers_503_and_frees_places() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", limit_concurrency=2) as server:
        with connect(server.port) as first, connect(server.port) as second:
            for sock in (first, second):
                sock.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: app.entered == 2)
            status, headers, body = get(server.port)
            assert status == 503 and headers[b"retry-after"] == b"1"
            assert body.startswith(b"503 Service Unavailable")
            assert concurrency(server).in_flight == 2
            app.release.set()
            assert exchange_reply(first) == 200 and exchange_reply(second) == 200
        wait_until(lambda: concurrency(server).in_flight == 0)
        assert get(server.port)[0] == 200


def exchange_reply(sock: socket.socket) -> int:
    """The status of the response to a request already sent on ``sock``."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/hold", headers=[("host", "t")]))
    client.send(h11.EndOfMessage())
    for _ in range(100):
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            return event.status_code
    raise ConnectionError("no response")


def test_concurrency_limit_over_http2_is_a_503_on_the_stream_not_goaway() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", limit_concurrency=1) as server:
        client = h2_client(server.port)
        held = h2_send(client, "/hold")
        wait_until(lambda: app.entered == 1)
        status, headers, body = h2_response(client, h2_send(client, "/"))
        assert status == 503 and headers[b"retry-after"] == b"1" and body.startswith(b"503 ")
        # RFC 8441 WebSocket on the same connection: refused the same way.
        _, ws_status = client.connect("/ws")
        assert ws_status == 503
        assert not client.goaway_received
        app.release.set()
        assert h2_response(client, held)[0] == 200
        wait_until(lambda: concurrency(server).in_flight == 0)
        assert h2_response(client, h2_send(client, "/"))[0] == 200
        assert not client.goaway_received
        client.sock.close()


def test_concurrency_limit_counts_websockets_and_refuses_handshakes_with_503() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", limit_concurrency=1) as server:
        with connect(server.port) as websocket:
            assert websocket_status(websocket) == 101
            wait_until(lambda: app.entered == 1)
            with connect(server.port) as second:
                assert websocket_status(second) == 503
            assert get(server.port)[0] == 503
            app.release.set()
            wait_until(lambda: concurrency(server).in_flight == 0)
        with connect(server.port) as again:
            assert websocket_status(again) == 101


def test_static_files_do_not_count_against_the_concurrency_limit(tmp_path: Path) -> None:
    (tmp_path / "site.css").write_text("body {}")
    app = HoldingApp()
    with running_server(app, lifespan="off", limit_concurrency=1, static=(f"/static/={tmp_path}",)) as server:
        with connect(server.port) as held:
            held.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: app.entered == 1)
            assert get(server.port, "/static/site.css")[0] == 200
            assert get(server.port, "/static/missing.css")[0] == 503  # no file: the app's turn
            app.release.set()
            assert exchange_reply(held) == 200


def test_concurrency_places_come_back_after_errors_disconnects_and_shutdown_cancel() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", limit_concurrency=3, graceful_timeout=0.5) as server:
        assert get(server.port, "/boom")[0] == 500
        wait_until(lambda: concurrency(server).in_flight == 0)
        with connect(server.port) as gone:
            gone.sendall(b"GET /until-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: app.entered == 1)
            assert concurrency(server).in_flight == 1
        wait_until(lambda: concurrency(server).in_flight == 0)
        client = h2_client(server.port)
        h2_send(client, "/hold")
        with connect(server.port) as held:
            held.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: app.entered == 3)
            assert concurrency(server).in_flight == 2
            server.stop()  # the graceful timeout passes: the app tasks are cancelled
            assert not server.thread.is_alive()
        client.sock.close()
        assert concurrency(server).in_flight == 0


# -- --rate-limit ---------------------------------------------------------------------------


@needs_loopback_range
def test_rate_limit_per_address_over_http1_and_websocket() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", rate_limit="1/m", rate_limit_burst=2) as server:
        with connect(server.port) as sock:  # keep-alive: counted per request, not per connection
            assert exchange(sock)[0].status_code == 200
            assert exchange(sock)[0].status_code == 200
            response, body = exchange(sock)
            assert response.status_code == 429
            retry_after = int(dict(response.headers)[b"retry-after"])
            assert 1 <= retry_after <= 60 and body.startswith(b"429 Too Many Requests")
        with connect(server.port) as websocket:
            assert websocket_status(websocket) == 429
        assert get(server.port, source="127.0.0.2")[0] == 200  # another client, another bucket
        with connect(server.port, "127.0.0.2") as websocket:
            assert websocket_status(websocket) == 101
            app.release.set()


def test_rate_limit_over_http2_answers_429_per_stream_without_goaway() -> None:
    app = HoldingApp()
    app.release.set()
    with running_server(app, lifespan="off", rate_limit="1/m", rate_limit_burst=2) as server:
        client = h2_client(server.port)
        statuses = [h2_response(client, h2_send(client, "/"))[0] for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        _, ws_status = client.connect("/ws")
        assert ws_status == 429
        assert not client.goaway_received
        client.sock.close()


@needs_loopback_range
def test_rate_limit_table_stays_bounded_with_many_client_addresses() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", rate_limit="1/m", rate_limit_table_size=50) as server:
        for number in range(300):
            source = f"127.1.{number // 250}.{1 + number % 250}"
            status, _, body = get(server.port, source=source)
            assert status == 200 and body == source.encode()  # scope["client"] is the address counted
            assert len(rate_limiter(server)) <= 50
        assert rate_limiter(server).evicted == 250
        assert get(server.port, source="127.1.1.44")[0] == 429  # among the 50 remembered


def test_rate_limit_refusals_are_logged_a_few_lines_not_one_per_request(caplog: pytest.LogCaptureFixture) -> None:
    app = HoldingApp()
    with caplog.at_level(logging.INFO, logger="gateway"):
        with running_server(app, lifespan="off", rate_limit="1/m", rate_limit_burst=1, access_log=False) as server:
            with connect(server.port) as sock:
                statuses = [exchange(sock)[0].status_code for _ in range(300)]
    assert statuses.count(429) == 299
    refused = [record for record in caplog.records if "refused" in record.getMessage()]
    assert 1 <= len(refused) <= 2, [record.getMessage() for record in refused]
    assert all(record.levelno == logging.WARNING for record in refused)


# -- --max-connections-per-ip -------------------------------------------------------------


@needs_loopback_range
@pytest.mark.parametrize("tls", [False, True])
def test_connections_per_address_beyond_the_limit_are_closed(tls: bool, cert_files: CertFiles) -> None:
    options: dict[str, Any] = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)} if tls else {}
    app = HoldingApp()
    with running_server(app, lifespan="off", max_connections_per_ip=2, **options) as server:
        per_address = connection_limits(server).per_address
        assert per_address is not None
        # Its own context: the session's shared one may have been given ALPN h2 by another test.
        context = ssl.create_default_context(cafile=str(cert_files.ca)) if tls else None
        first, second = RawClient(server.port, context=context), RawClient(server.port, context=context)
        wait_until(lambda: per_address.count("127.0.0.1") == 2)
        with RawClient(server.port, context=context) as third:
            assert third.is_closed(3)
        assert per_address.count("127.0.0.1") == 2
        other = connect(server.port, "127.0.0.2")  # another address is not affected
        if context is not None:
            other = context.wrap_socket(other, server_hostname="localhost")
        assert exchange(other)[0].status_code == 200
        second.close()
        wait_until(lambda: per_address.count("127.0.0.1") == 1)
        with RawClient(server.port, context=context) as fourth:
            fourth.request()
            assert fourth.response()[0].status_code == 200
        first.close()
        other.close()
        wait_until(lambda: len(per_address) == 0)


@needs_loopback_range
def test_connections_per_address_table_empties_after_many_addresses() -> None:
    app = HoldingApp()
    with running_server(app, lifespan="off", max_connections_per_ip=1) as server:
        per_address = connection_limits(server).per_address
        assert per_address is not None
        sockets = [connect(server.port, f"127.2.0.{number}") for number in range(1, 201)]
        try:
            wait_until(lambda: len(per_address) == 200)
            with connect(server.port, "127.2.0.7") as extra:
                extra.settimeout(3)
                assert extra.recv(10) == b""
        finally:
            for sock in sockets:
                sock.close()
        wait_until(lambda: len(per_address) == 0)


# -- --max-connections -----------------------------------------------------------------------


def accept_queue_length(port: int) -> int | None:
    """Connections waiting in the kernel's accept queue of the IPv4 listener on ``port``.

    Linux shows it as the rx_queue of a LISTEN (0A) socket in /proc/net/tcp; None elsewhere.
    """
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[4].split(":")[1], 16)
    return None


def _check_backlog_waiting(server: RunningServer) -> None:
    gate = connection_limits(server).gate
    assert gate is not None
    first, second = connect(server.port), connect(server.port)
    wait_until(lambda: gate.open == 2)
    assert exchange(first)[0].status_code == 200
    # The third connect completes in the kernel's backlog; its request waits, unanswered.
    with connect(server.port) as third:
        third.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        third.settimeout(0.7)
        with pytest.raises(TimeoutError):
            third.recv(100)
        assert gate.open == 2 and len(server.server.context.connections) == 2
        if accept_queue_length(server.port) is not None:  # waiting in the kernel, not accepted
            assert accept_queue_length(server.port) == 1
        first.close()  # a place frees up: the waiting connection is accepted and served
        third.settimeout(5)
        assert third.recv(100).startswith(b"HTTP/1.1 200 ")
        assert gate.open == 2 and accept_queue_length(server.port) in (0, None)
    second.close()
    wait_until(lambda: gate.open == 0)


def test_max_connections_leaves_new_connections_in_the_backlog() -> None:
    with running_server(HoldingApp(), lifespan="off", max_connections=2) as server:
        _check_backlog_waiting(server)
        port = server.port
    assert not server.thread.is_alive()
    with pytest.raises(ConnectionRefusedError):  # the own accept loop closed its socket
        connect(port).close()


def test_max_connections_in_the_accept_thread_of_windows_workers() -> None:
    config = Config(port=0, max_connections=2)
    sockets = bind_sockets(config)
    with running_server(
        HoldingApp(), lifespan="off", sockets=sockets, accept_in_thread=True, max_connections=2
    ) as server:
        _check_backlog_waiting(server)


def test_max_connections_place_comes_back_after_a_failed_tls_handshake(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "tls_handshake_timeout": 1.0}
    with running_server(HoldingApp(), lifespan="off", max_connections=1, **options) as server:
        gate = connection_limits(server).gate
        assert gate is not None
        with connect(server.port) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # not a TLS ClientHello
            plain.settimeout(5)
            while plain.recv(100):
                pass
        wait_until(lambda: gate.open == 0)
        with connect(server.port):  # never sends a ClientHello: the timeout frees it
            wait_until(lambda: gate.open == 1)
        wait_until(lambda: gate.open == 0, timeout=5)
        with RawClient(server.port, context=ssl.create_default_context(cafile=str(cert_files.ca))) as client:
            client.request()
            assert client.response()[0].status_code == 200


def test_limits_are_off_by_default() -> None:
    with running_server(HoldingApp(), lifespan="off") as server:
        assert server.server.context.request_limits is None
        assert server.server.context.connection_limits is None
        assert RequestLimits.from_config(server.server.config) is None


# -- the command line -----------------------------------------------------------------------


def test_limit_options_from_the_command_line() -> None:
    args = ("--port", "0", "--rate-limit", "2/m", "--limit-concurrency", "8", "--max-connections", "4")
    with gateway_process(*args, "--max-connections-per-ip", "3", "tests.apps.basic:app") as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert [get(port, "/x")[0] for _ in range(3)] == [200, 200, 429]
        server.wait_for(r"\[WARNING\] 127\.0\.0\.1:\d+ - refused: over the rate \(2 at once\), answered 429")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rate-limit", "fast", "asgigw: error: --rate-limit 'fast': expected N/s or N/m"),
        ("--max-connections", "-1", "asgigw: error: --max-connections must be 0 (off) or more"),
        ("--limit-concurrency", "-2", "asgigw: error: --limit-concurrency must be 0 (off) or more"),
    ],
)
def test_bad_limit_options_are_one_line_and_exit_2(option: str, value: str, message: str) -> None:
    result = run_gateway(option, value, "tests.apps.basic:app")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1


# -- through the PROXY protocol ---------------------------------------------------------------


def proxied(port: int, address: str) -> socket.socket:
    """A connection whose PROXY protocol v1 header names ``address`` as the client."""
    sock = connect(port)
    sock.sendall(f"PROXY TCP4 {address} 127.0.0.1 40000 80\r\n".encode())
    return sock


def test_limits_count_the_proxy_protocol_client_address_with_many_addresses() -> None:
    app = HoldingApp()
    options: dict[str, Any] = {"proxy_protocol": True, "max_connections_per_ip": 1}
    with running_server(app, lifespan="off", rate_limit="1/m", rate_limit_table_size=100, **options) as server:
        per_address = connection_limits(server).per_address
        assert per_address is not None
        for number in range(1000):
            address = f"10.{number // 250}.{number % 250}.1"
            with proxied(server.port, address) as sock:
                response, body = exchange(sock)
                assert response.status_code == 200 and body == address.encode()
            assert len(rate_limiter(server)) <= 100
        assert rate_limiter(server).evicted == 900
        with proxied(server.port, "10.3.249.1") as sock:  # among the last 100: its bucket is empty
            assert exchange(sock)[0].status_code == 429
        with proxied(server.port, "192.0.2.7") as first, proxied(server.port, "192.0.2.7") as second:
            assert exchange(first)[0].status_code == 200
            second.settimeout(3)
            assert second.recv(100) == b""  # the same client address: closed after its header
        wait_until(lambda: len(per_address) == 0)
