"""Graceful shutdown of a real ``python -m gateway`` process: SIGTERM/SIGINT with a request in
flight, the graceful timeout, a second signal, and the start-up line's URLs."""

from __future__ import annotations

import signal
import socket
import time

import h11
import pytest

from tests.apps.basic import SLOW_PIECE, SLOW_PIECES
from tests.apps.process import free_port, gateway_process
from tests.conftest import CertFiles

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")

SHUTTING_DOWN = r"shutting down \(waiting up to"


class Client:
    """A raw HTTP/1.1 client on a real socket, parsed by h11."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connection = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def send_get(self, target: str) -> None:
        request = h11.Request(method="GET", target=target, headers=[("Host", "localhost")])
        self.sock.sendall(self.connection.send(request) + self.connection.send(h11.EndOfMessage()))

    def next_event(self) -> object:
        while True:
            event = self.connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.connection.receive_data(self.sock.recv(65536))

    def start_response(self, target: str) -> int:
        """Send a GET and wait for the response head; return the status."""
        self.send_get(target)
        event = self.next_event()
        assert isinstance(event, h11.Response), event
        return event.status_code

    def read_body(self) -> tuple[bytes, bool]:
        """The rest of the body and whether the response completed (False if cut off)."""
        body = b""
        try:
            while True:
                event = self.next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return body, True
        except h11.RemoteProtocolError:  # the server closed before the end of the body
            return body, False

    def is_closed_by_server(self) -> bool:
        """True when the server closes this connection within the socket timeout."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def refused_soon(port: int, within: float = 3.0) -> bool:
    """True once connecting to ``port`` is refused (the listener has closed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_request_in_flight_then_exits_0(signum: int) -> None:
    args = ("--port", "0", "--keep-alive-timeout", "30", "tests.apps.basic:app")
    with gateway_process(*args) as server:
        port = port_of(server.url)
        idle, slow = Client(port), Client(port)
        try:
            idle.send_get("/")
            assert isinstance(idle.next_event(), h11.Response)
            assert idle.read_body()[1]
            assert slow.start_response("/slow?seconds=1.5") == 200
            server.send_signal(signum)
            server.wait_for(SHUTTING_DOWN)
            # The idle keep-alive connection is closed at once, not after its 30 s timeout.
            idle.sock.settimeout(3)
            assert idle.is_closed_by_server()
            assert refused_soon(port)
            body, complete = slow.read_body()
            assert complete
            assert body == SLOW_PIECE * SLOW_PIECES
        finally:
            idle.close()
            slow.close()
        assert server.wait(10) == 0
    stderr = server.stderr
    assert "app: slow response done" in stderr
    assert stderr.index("app: slow response done") < stderr.index("app: lifespan shutdown")
    assert "Traceback" not in stderr


def test_request_longer_than_graceful_timeout_is_cut_off() -> None:
    args = ("--port", "0", "--graceful-timeout", "0.5", "tests.apps.basic:app")
    with gateway_process(*args) as server:
        slow = Client(port_of(server.url))
        try:
            assert slow.start_response("/slow?seconds=30") == 200
            server.send_signal(signal.SIGTERM)
            # Prompt: the graceful timeout (0.5 s) ends it, not the request's 30 s.
            assert server.wait(8) == 0
            body, complete = slow.read_body()
        finally:
            slow.close()
    assert not complete
    assert len(body) < SLOW_PIECES * len(SLOW_PIECE)
    assert "app: slow response done" not in server.stderr
    assert "app: lifespan shutdown" in server.stderr


def test_second_sigint_exits_at_once() -> None:
    args = ("--port", "0", "--graceful-timeout", "60", "tests.apps.basic:app")
    with gateway_process(*args) as server:
        slow = Client(port_of(server.url))
        try:
            assert slow.start_response("/slow?seconds=30") == 200
            server.send_signal(signal.SIGINT)
            server.wait_for(SHUTTING_DOWN)
            server.send_signal(signal.SIGINT)
            assert server.wait(8) == 0
            _, complete = slow.read_body()
        finally:
            slow.close()
    assert not complete
    assert "second stop request" in server.stderr


def test_startup_line_names_the_http_url() -> None:
    port = free_port()
    with gateway_process("--host", "127.0.0.1", "--port", str(port), "tests.apps.basic:app") as server:
        assert server.urls() == [f"http://127.0.0.1:{port}"]
        assert f"serving http://127.0.0.1:{port} " in server.stderr


def test_startup_line_names_the_https_url(cert_files: CertFiles) -> None:
    port = free_port()
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    with gateway_process("--port", str(port), *tls, "tests.apps.basic:app", plain=False) as server:
        assert server.urls() == [f"https://127.0.0.1:{port}"]
        assert f"serving https://127.0.0.1:{port} " in server.stderr


def test_second_sigint_ends_a_hanging_lifespan_shutdown() -> None:
    with gateway_process("--port", "0", "tests.apps.basic:shutdown_hangs") as server:
        server.send_signal(signal.SIGTERM)
        server.wait_for("app: lifespan shutdown hangs")
        server.send_signal(signal.SIGINT)
        assert server.wait(8) == 0
    assert "application shutdown cancelled by a second stop request" in server.stderr
    assert "Traceback" not in server.stderr


def test_stop_during_startup_does_not_listen() -> None:
    with gateway_process("--port", "0", "tests.apps.basic:startup_slow", wait_serving=False) as server:
        server.wait_for("app: lifespan startup begins")
        server.send_signal(signal.SIGTERM)
        assert server.wait(8) == 0
    assert "serving" not in server.stderr
    assert "app: lifespan shutdown" in server.stderr


def test_second_signal_ends_a_hanging_startup() -> None:
    with gateway_process("--port", "0", "tests.apps.basic:startup_hangs", wait_serving=False) as server:
        server.wait_for("app: lifespan startup begins")
        server.send_signal(signal.SIGTERM)
        server.wait_for(SHUTTING_DOWN)
        server.send_signal(signal.SIGINT)
        assert server.wait(8) == 1
    assert "application startup cancelled by a second stop request" in server.stderr
    assert "serving" not in server.stderr
