"""A real HAProxy in front, in TCP mode, sending the PROXY protocol (v1 and v2).

HAProxy connects to asgigw from 127.0.0.2 (``source``), while the test client connects to
HAProxy from 127.0.0.1: the app seeing 127.0.0.1 and the client's own port proves the
address came from the PROXY header. TLS passes through HAProxy untouched, so HTTP/2 (ALPN)
and WebSocket run end to end over it. Skipped when the ``haproxy`` binary is missing (the
Debian package ``haproxy``; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.apps import edge
from tests.conftest import CertFiles, running_server

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian package haproxy)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def haproxy(tmp_path: Path, backend_port: int, send: str) -> Iterator[int]:
    """HAProxy on a free 127.0.0.1 port relaying TCP to ``backend_port`` with ``send``."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 20s\n  timeout server 20s\n"
        f"frontend edge\n  bind 127.0.0.1:{port}\n  default_backend gateway\n"
        f"backend gateway\n  source 127.0.0.2\n  server asgigw 127.0.0.1:{backend_port} {send}\n"
    )
    assert HAPROXY is not None
    log = tmp_path / "haproxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stderr=output, stdout=output)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_plain_http_behind_haproxy(tmp_path: Path, send: str) -> None:
    with (
        running_server(edge.app, proxy_protocol=True, lifespan="off") as server,
        haproxy(tmp_path, server.port, send) as port,
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /who HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
            own_port = sock.getsockname()[1]
        report = json.loads(response.partition(b"\r\n\r\n")[2])
        assert report["client"] == ["127.0.0.1", own_port]
        # Without the PROXY header the app would see HAProxy's own address.
        with running_server(edge.app, lifespan="off") as bare, haproxy(tmp_path, bare.port, "") as bare_port:
            assert httpx.get(f"http://127.0.0.1:{bare_port}/who", timeout=5).json()["client"][0] == "127.0.0.2"


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_tls_passthrough_http1_http2_and_websocket(tmp_path: Path, cert_files: CertFiles, send: str) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with (
        running_server(edge.app, proxy_protocol=True, **options) as server,
        haproxy(tmp_path, server.port, send) as port,
    ):
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost"
        ) as sock:
            sock.sendall(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            response = b""
            with contextlib.suppress(ssl.SSLError):
                while chunk := sock.recv(65536):
                    response += chunk
            own_port = sock.getsockname()[1]
        report = json.loads(response.partition(b"\r\n\r\n")[2])
        assert report == {**report, "client": ["127.0.0.1", own_port], "scheme": "https"}
        for http2 in (False, True):
            fresh = ssl.create_default_context(cafile=str(cert_files.ca))  # httpx sets ALPN on it
            with httpx.Client(verify=fresh, http2=http2, timeout=5) as client:
                answer = client.get(f"https://127.0.0.1:{port}/who")
            assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert answer.json()["client"][0] == "127.0.0.1"
        # A context of its own: httpx has set ALPN h2 on the shared one.
        ws_context = ssl.create_default_context(cafile=str(cert_files.ca))
        with ws_connect(f"wss://127.0.0.1:{port}/chat", ssl=ws_context, open_timeout=5) as ws:
            message = json.loads(ws.recv(timeout=5))
        assert message["client"][0] == "127.0.0.1"
        assert message["scheme"] == "wss"
