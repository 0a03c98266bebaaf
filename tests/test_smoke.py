"""End-to-end smoke tests: the real server, httpx as the client, plain and TLS."""

from __future__ import annotations

import httpx

from examples.hello import app as hello_app
from tests.conftest import CertFiles, running_server


def test_plain_http_request() -> None:
    with running_server(hello_app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert response.text == "Hello, world!\n"
        assert response.http_version == "HTTP/1.1"
        assert "date" in response.headers


def test_tls_request(cert_files: CertFiles) -> None:
    with running_server(hello_app, certfile=str(cert_files.cert), keyfile=str(cert_files.key)) as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=cert_files.client_context) as client:
            response = client.get("/")
        assert response.status_code == 200
        assert response.text == "Hello, world!\n"


def test_log_lines_show_ipv6_peers_in_brackets() -> None:
    from gateway.logs import address_label

    assert address_label(("::1", 50312, 0, 0)) == "[::1]:50312"
    assert address_label(("127.0.0.1", 8000)) == "127.0.0.1:8000"
    assert address_label(None) == "-"
