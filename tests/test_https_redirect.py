"""HTTP -> HTTPS: the --redirect-http listener, and plain HTTP sent to the TLS port."""

from __future__ import annotations

import logging
import re
import ssl

import httpx
import pytest

from gateway.config import Config, ConfigError
from gateway.https_redirect import https_url
from tests.apps import edge
from tests.conftest import CertFiles, running_server
from tests.raw import RawClient
from tests.test_workers import supervisor, tls_client


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with RawClient(port, timeout=timeout) as client:
        client.send(data)
        received, closed = client.read_until_closed()
    assert closed
    return received


def location(response: bytes) -> str:
    match = re.search(rb"\r\nlocation: ([^\r]*)\r\n", response, re.IGNORECASE)
    assert match, response
    return match.group(1).decode()


def tls_options(cert_files: CertFiles) -> dict[str, object]:
    return {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}


def test_https_url_keeps_host_path_and_query_and_maps_the_port() -> None:
    scope = {"headers": [(b"host", b"shop.example:80")], "raw_path": b"/a%20b/c", "query_string": b"x=1&y"}
    assert https_url(scope, 443) == "https://shop.example/a%20b/c?x=1&y"
    assert https_url(scope, 8443) == "https://shop.example:8443/a%20b/c?x=1&y"
    scope = {"headers": [(b"host", b"[2001:db8::1]:80")], "raw_path": b"/", "query_string": b""}
    assert https_url(scope, 443) == "https://[2001:db8::1]/"
    assert https_url(scope, 443, scheme="wss") == "wss://[2001:db8::1]/"
    # A Host that is not a host cannot steer the Location: the server's own address is used.
    for host in (b"evil.example/x", b"a b", b"a@b", b""):
        scope = {"headers": [(b"host", host)], "raw_path": b"/p", "server": ("::1", 80), "query_string": b""}
        assert https_url(scope, 443) == "https://[::1]/p"


def test_config_options() -> None:
    with pytest.raises(ConfigError, match="--redirect-http redirects to the HTTPS listener"):
        Config(redirect_http=("127.0.0.1:0",))
    with pytest.raises(ConfigError, match="--redirect-http '80'"):
        Config(redirect_http=("80",), dev_tls=True)
    config = Config(redirect_http=("127.0.0.1:0",), dev_tls=True)
    assert [listener.redirect for listener in config.listeners] == [False, True]


def test_redirect_listener(cert_files: CertFiles, caplog: pytest.LogCaptureFixture, http1_parser: str) -> None:
    with (
        caplog.at_level(logging.INFO, logger="gateway.access"),
        running_server(
            edge.app, redirect_http=("127.0.0.1:0",), access_log=True, header_timeout=0.5, **tls_options(cert_files)
        ) as server,
    ):
        https_port = server.port
        port = server.server.redirect_addresses[0][1]
        response = exchange(port, b"GET /a/b?x=1 HTTP/1.1\r\nHost: shop.example:80\r\nConnection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 308 ")
        assert location(response) == f"https://shop.example:{https_port}/a/b?x=1"
        # POST keeps its method with 308; HTTP/1.0 without Host gets the address it reached.
        post = b"POST /form HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"
        assert location(exchange(port, post)) == f"https://127.0.0.1:{https_port}/form"
        # HTTP/2 with prior knowledge (h2c) too.
        with httpx.Client(http1=False, http2=True) as client:
            answer = client.get(f"http://127.0.0.1:{port}/h2?q", follow_redirects=False)
        assert (answer.http_version, answer.status_code) == ("HTTP/2", 308)
        assert answer.headers["location"] == f"https://127.0.0.1:{https_port}/h2?q"
        # ACME http-01 challenges reach the app over plain HTTP.
        with httpx.Client() as client:
            acme = client.get(f"http://127.0.0.1:{port}/.well-known/acme-challenge/abc123")
        assert (acme.status_code, acme.text) == (200, "token abc123")
        # Following the redirect lands on the app over TLS.
        with httpx.Client(verify=cert_files.client_context) as client:
            followed = client.get(f"http://127.0.0.1:{port}/end", follow_redirects=True)
        assert (followed.status_code, followed.json()["scheme"]) == (200, "https")
        # A WebSocket handshake is redirected as well.
        upgrade = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]
        with RawClient(port) as client:
            client.request("GET", "/chat?room=1", upgrade)
            status, _ = client.response()
        assert status.status_code == 308
        assert dict(status.headers)[b"location"] == f"wss://127.0.0.1:{https_port}/chat?room=1".encode()
        # Bad input: 400, and a silent client is dropped after --header-timeout.
        assert exchange(port, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert exchange(port, b"GET / HTTP/1.1\r\n", timeout=3) == b""
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert any('"GET /a/b?x=1 HTTP/1.1" 308' in line for line in lines), lines
    assert any('"GET /.well-known/acme-challenge/abc123 HTTP/1.1" 200' in line for line in lines), lines


def test_plain_http_on_the_tls_port_gets_400(
    cert_files: CertFiles, caplog: pytest.LogCaptureFixture, http1_parser: str
) -> None:
    with caplog.at_level(logging.INFO), running_server(edge.app, access_log=True, **tls_options(cert_files)) as server:
        response = exchange(server.port, b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # Connection: close is sent and the connection is closed (exchange checks that).
        assert response.startswith(b"HTTP/1.1 400 ")
        assert b"connection: close" in response.lower()
        assert response.endswith(b"the plain HTTP request was sent to the HTTPS port; use https://.\n")
        assert exchange(server.port, b"\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        # TLS still works on the same port.
        with httpx.Client(verify=cert_files.client_context) as client:
            assert client.get(f"{server.url}/ok").status_code == 200
    messages = [record.getMessage() for record in caplog.records]
    assert any("plain HTTP sent to a TLS port" in message for message in messages)
    assert any('"GET /page HTTP/1.1" 400' in message for message in messages)


def test_plain_http_on_the_tls_port_is_redirected_with_redirect_http(cert_files: CertFiles) -> None:
    with running_server(edge.app, redirect_http=("127.0.0.1:0",), **tls_options(cert_files)) as server:
        response = exchange(server.port, b"GET /page?x HTTP/1.1\r\nHost: localhost:1234\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 308 ")
    assert location(response) == f"https://localhost:{server.port}/page?x"


def test_tls_with_alpn_h2_still_works_through_the_pre_tls_step(cert_files: CertFiles) -> None:
    with running_server(edge.app, **tls_options(cert_files)) as server:
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        with httpx.Client(verify=context, http2=True) as client:
            answer = client.get(f"{server.url}/x")
    assert (answer.http_version, answer.json()["scheme"]) == ("HTTP/2", "https")


def test_redirect_listener_in_every_worker(cert_files: CertFiles) -> None:
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    args = ("--port", "0", "--workers", "2", "--redirect-http", "127.0.0.1:0", *tls, "tests.apps.pid:app")
    with supervisor(*args, plain=False) as server:
        found = server.wait_for(r"redirecting http://127\.0\.0\.1:(\d+) to https")
        port = int(found.group(1))
        https_port = int(server.url.rsplit(":", 1)[1])
        for _ in range(6):
            answer = httpx.get(f"http://127.0.0.1:{port}/w?x=1", timeout=10)
            assert answer.status_code == 308
            assert answer.headers["location"] == f"https://127.0.0.1:{https_port}/w?x=1"
        with tls_client(cert_files, http2=True) as client:
            assert client.get(f"http://127.0.0.1:{port}/w", follow_redirects=True).status_code == 200
