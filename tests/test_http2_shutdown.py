"""Graceful shutdown over HTTP/2 with real clients: one request in flight on SIGTERM finishes.

httpx (httpcore) and every other client built on the python h2 library fail all their open
streams on any GOAWAY, so the server sends none while a stream is open (docs/http2.md). Each
client here has a slow response in flight when the server gets SIGTERM; the response must
arrive whole and the server exit 0, with one worker and with ``--workers 2``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.apps.basic import SLOW_PIECE, SLOW_PIECES
from tests.apps.process import ServerProcess, gateway_process
from tests.conftest import CertFiles

BODY = SLOW_PIECE * SLOW_PIECES
SECONDS = 2.0
PATH = f"/slow?seconds={SECONDS}"

Fetch = Callable[[CertFiles, int], bytes]


def fetch_httpx(cert_files: CertFiles, port: int) -> bytes:
    # A context of its own: httpcore sets ALPN h2 on the context it is given, and the session's
    # client_context must keep offering HTTP/1.1 only to the tests that use it.
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        response = client.get(f"https://localhost:{port}{PATH}")
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        return response.content


def fetch_curl(cert_files: CertFiles, port: int) -> bytes:
    url = f"https://localhost:{port}{PATH}"
    command = ["curl", "--http2", "-sS", "--fail", "--cacert", str(cert_files.ca), "--max-time", "10", url]
    done = subprocess.run(command, capture_output=True, timeout=15, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fetch_nghttp(cert_files: CertFiles, port: int) -> bytes:
    # nghttp does not check certificates; it speaks HTTP/2 only (ALPN h2).
    command = ["nghttp", "--timeout=10", f"https://localhost:{port}{PATH}"]
    done = subprocess.run(command, capture_output=True, timeout=15, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fetch_h2(cert_files: CertFiles, port: int) -> bytes:
    """The python h2 library's client state machine over a TLS socket."""
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost"
    ) as sock:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", PATH)]
        connection.send_headers(1, headers, end_stream=True)
        sock.sendall(connection.data_to_send())
        body = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            assert data, "server closed before the response ended"
            for event in connection.receive_data(data):
                assert not isinstance(event, h2.events.ConnectionTerminated), event
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, 1)
                if isinstance(event, h2.events.StreamEnded):
                    return body
            sock.sendall(connection.data_to_send())
        raise AssertionError("no complete response within 10 s")


CLIENTS: dict[str, Fetch] = {"httpx": fetch_httpx, "curl": fetch_curl, "nghttp": fetch_nghttp, "h2": fetch_h2}


@pytest.fixture(params=list(CLIENTS))
def fetch(request: pytest.FixtureRequest) -> Iterator[Fetch]:
    name = request.param
    if name in ("curl", "nghttp") and shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (Debian {'nghttp2-client' if name == 'nghttp' else name})")
    yield CLIENTS[name]


def in_flight_on_sigterm(server: ServerProcess, cert_files: CertFiles, fetch: Fetch) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    result: dict[str, object] = {}

    def client() -> None:
        try:
            result["body"] = fetch(cert_files, port)
        except BaseException as exc:  # reported in the main thread
            result["error"] = exc

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(SECONDS / 4)  # the request is in flight: its response has begun
    assert thread.is_alive(), result
    server.send_signal(signal.SIGTERM)
    server.wait_for(r"shutting down \(waiting up to")
    thread.join(15)
    assert "error" not in result, result["error"]
    assert result.get("body") == BODY
    assert server.wait(10) == 0
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers-2"])
def test_request_in_flight_on_sigterm_completes(fetch: Fetch, workers: int, cert_files: CertFiles) -> None:
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    args = ("--port", "0", "--workers", str(workers), *tls, "tests.apps.basic:app")
    if workers == 1:
        args = args[:2] + args[4:]
    with gateway_process(*args, plain=False) as server:
        in_flight_on_sigterm(server, cert_files, fetch)
