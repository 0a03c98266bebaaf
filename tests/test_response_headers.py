"""``--hsts`` and ``--header`` end to end (HTTP/1.1 and HTTP/2, TLS and plain), and their checks."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Config, ConfigError
from gateway.response_headers import ResponseHeaders, hsts_value
from tests.apps.edge_responses import PAGE, EdgeApp
from tests.apps.process import run_gateway
from tests.conftest import CertFiles, RunningServer, running_server
from tests.raw import RawClient
from tests.test_websocket_http2 import H2WebSocketClient, _connect

HSTS = "max-age=63072000; includeSubDomains; preload"
OPTIONS: dict[str, Any] = {
    "hsts": 63072000,
    "hsts_include_subdomains": True,
    "hsts_preload": True,
    "response_headers": ("X-Frame-Options: DENY", "Server:  asgigw ", "Permissions-Policy: camera=(), geolocation=()"),
}
TRANSPORTS = ["h1", "h2"]


@pytest.fixture(scope="module")
def servers(cert_files: CertFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    folder = tmp_path_factory.mktemp("headers-static")
    (folder / "page.html").write_bytes(PAGE)
    app = EdgeApp()
    static = (f"/static/={folder}",)
    tls = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    with (
        running_server(app, static=static, **OPTIONS, **tls) as secure,
        running_server(app, static=static, **OPTIONS) as plain,
    ):
        yield {"tls": secure, "plain": plain}


def get(server: RunningServer, transport: str, path: str, cert_files: CertFiles) -> httpx.Response:
    tls = server.server.config.tls
    # Not the shared cert_files.client_context: httpx would set ALPN h2 on it for later tests.
    verify: Any = ssl.create_default_context(cafile=str(cert_files.ca)) if tls else False
    with httpx.Client(http2=transport == "h2", verify=verify, timeout=5.0) as client:
        response = client.get(server.url + path)
    assert response.http_version == ("HTTP/2" if transport == "h2" and tls else "HTTP/1.1")
    return response


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", ["/page", "/static/page.html", "/static/.hidden", "/fail", "/missing-route"])
def test_tls_responses_carry_hsts_and_extra_headers(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str, path: str
) -> None:
    """App, static, gateway 500 and static 404 answers alike."""
    response = get(servers["tls"], transport, path, cert_files)
    assert response.headers.get_list("strict-transport-security") == [HSTS]
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers["server"] == "asgigw"  # the whitespace around the value is not part of it
    assert response.headers["permissions-policy"] == "camera=(), geolocation=()"
    assert "date" in response.headers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_plain_http_gets_no_hsts(servers: dict[str, RunningServer], cert_files: CertFiles, transport: str) -> None:
    for path in ("/page", "/static/page.html", "/fail"):
        response = get(servers["plain"], transport, path, cert_files)
        assert "strict-transport-security" not in response.headers, path
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("server_name", ["tls", "plain"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_apps_own_field_wins(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str, server_name: str
) -> None:
    response = get(servers[server_name], transport, "/own-headers", cert_files)
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("strict-transport-security") == ["max-age=60"]
    assert response.headers["server"] == "asgigw"


def test_websocket_handshake_carries_them_over_tls(servers: dict[str, RunningServer], cert_files: CertFiles) -> None:
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    with RawClient(servers["tls"].port, context=context) as client:
        client.send(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        data = client.read_until(b"\r\n\r\n")
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 101 ")
    assert b"\r\nstrict-transport-security: " + HSTS.lower().encode() + b"\r\n" in head
    assert b"\r\nx-frame-options: deny\r\n" in head
    # A refused handshake (no version) is answered by the gateway: the fields are there too.
    with RawClient(servers["tls"].port, context=context) as client:
        client.send(b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n")
        data, _ = client.read_until_closed(5)
    assert data.startswith(b"HTTP/1.1 426 ") and b"strict-transport-security" in data.lower()


def test_http2_websocket_handshake_carries_them(servers: dict[str, RunningServer], cert_files: CertFiles) -> None:
    """RFC 8441: the 200 answering an extended CONNECT is a response like any other."""
    with _connect(servers["tls"], True, cert_files) as sock:
        client = H2WebSocketClient(sock, "https")
        stream_id, status = client.connect("/ws")
    assert status == 200
    fields = client.responses[stream_id]
    assert fields[b"strict-transport-security"] == HSTS.encode()
    assert fields[b"x-frame-options"] == b"DENY"


def test_nothing_added_by_default(tmp_path: Path) -> None:
    assert ResponseHeaders.from_config(Config()) is None
    with running_server(EdgeApp(), certfile=None) as server, httpx.Client(timeout=5.0) as client:
        response = client.get(server.url + "/page")
    assert "x-frame-options" not in response.headers and "strict-transport-security" not in response.headers


def test_hsts_values() -> None:
    assert hsts_value(0, include_subdomains=False, preload=False) == b"max-age=0"
    assert hsts_value(300, include_subdomains=True, preload=False) == b"max-age=300; includeSubDomains"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hsts": -1}, "--hsts must be 0"),
        ({"hsts_include_subdomains": True}, "need --hsts SECONDS"),
        ({"hsts_preload": True}, "need --hsts SECONDS"),
        ({"hsts": 31536000, "hsts_preload": True}, "--hsts-preload needs --hsts-include-subdomains"),
        ({"hsts": 86400, "hsts_include_subdomains": True, "hsts_preload": True}, "--hsts-preload needs"),
        ({"response_headers": ("X-Frame-Options DENY",)}, "expected 'Name: value'"),
        ({"response_headers": ("X Frame: DENY",)}, "expected 'Name: value'"),
        ({"response_headers": (": DENY",)}, "expected 'Name: value'"),
        ({"response_headers": ("X-Test: a\r\nX-Injected: b",)}, "printable ASCII"),
        ({"response_headers": ("X-Test: caf\u00e9",)}, "printable ASCII"),
        ({"response_headers": ("Content-Length: 5",)}, "asgigw sets Content-Length itself"),
        ({"response_headers": ("transfer-encoding: chunked",)}, "itself"),
        ({"response_headers": ("Strict-Transport-Security: max-age=1",)}, "use --hsts"),
    ],
)
def test_config_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_valid_edge_cases() -> None:
    Config(hsts=0)  # max-age=0 tells browsers to forget the host (RFC 6797 §6.1.1)
    Config(hsts=31536000, hsts_include_subdomains=True, hsts_preload=True)
    Config(response_headers=("X-Empty:", "X-Tab: a\tb", "Link: </a.css>; rel=preload"))


def test_cli_errors_are_one_line() -> None:
    result = run_gateway("--hsts", "100", "--hsts-preload", "tests.apps.basic:app")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "asgigw: error: --hsts-preload needs --hsts-include-subdomains and --hsts 31536000 (a year) or more"
    ]
    result = run_gateway("--header", "Bad Name: x", "tests.apps.basic:app")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--header 'Bad Name: x'" in result.stderr
    result = run_gateway("--compress-types", "text/html,nonsense", "tests.apps.basic:app")
    assert result.returncode == 2 and "--compress-types 'nonsense'" in result.stderr


def test_config_file_keys(tmp_path: Path) -> None:
    """The options work from a --config file too; a bad value names the file."""
    config = tmp_path / "asgigw.toml"
    config.write_text(
        'hsts = 300\nheader = {"X-Frame-Options" = "DENY", "Server" = "asgigw"}\n'
        'compress = true\ncompress-types = "text/*,application/json"\n'
    )
    result = run_gateway("--config", str(config), "--print-config", "tests.apps.basic:app")
    assert result.returncode == 0, result.stderr
    assert 'header = ["X-Frame-Options: DENY", "Server: asgigw"]' in result.stdout
    assert "hsts = 300" in result.stdout and "compress = true" in result.stdout
    config.write_text("hsts = 300\nhsts-preload = true\n")
    result = run_gateway("--config", str(config), "tests.apps.basic:app")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"asgigw: error: {config}: --hsts-preload needs --hsts-include-subdomains and --hsts 31536000 (a year) or more"
    )
