"""Access-log formats and lines for unfinished exchanges, over real sockets (docs/logging.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hyperframe.frame import DataFrame, RstStreamFrame

from gateway.access_log import AccessLogFormatter
from gateway.config import ACCESS_LOG_FIELDS, Config, ConfigError
from tests.apps.process import run_gateway
from tests.conftest import CertFiles, running_server
from tests.raw import RawClient
from tests.test_http2_peer import FramePeer

Scope = dict[str, Any]


async def hello_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    body = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def access_lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The gateway.access messages of this test, as a live list (caplog's records)."""
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.INFO, logger="gateway")
    lines: list[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "gateway.access":
                lines.append(record.getMessage())

    collector = Collector()
    logging.getLogger("gateway.access").addHandler(collector)
    try:
        yield lines
    finally:
        logging.getLogger("gateway.access").removeHandler(collector)


def wait_for_lines(lines: list[str], count: int, timeout: float = 5.0) -> list[str]:
    """Poll (bounded) until ``count`` access lines were written; the lines."""
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(lines) >= count, lines
    return lines


# -- formats ----------------------------------------------------------------------------


def test_default_format_is_the_line_it_always_was(access_lines: list[str]) -> None:
    with running_server(hello_app, access_log=True) as server:
        httpx.get(f"{server.url}/items?page=2")
        line = wait_for_lines(access_lines, 1)[0]
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /items\?page=2 HTTP/1\.1" 200 5 \d+\.\dms', line), line


def test_common_and_combined_formats(access_lines: list[str]) -> None:
    headers = {"user-agent": "probe/1.0", "referer": "https://example.test/from"}
    with running_server(hello_app, access_log=True, access_log_format="common") as server:
        httpx.get(f"{server.url}/a%20b?x=1", headers=headers)
    with running_server(hello_app, access_log=True, access_log_format="combined") as server:
        httpx.get(f"{server.url}/a%20b?x=1", headers=headers)
    common, combined = wait_for_lines(access_lines, 2)
    clf = r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /a%20b\?x=1 HTTP/1\.1" 200 5'
    assert re.fullmatch(clf, common), common
    assert re.fullmatch(clf + r' "https://example\.test/from" "probe/1\.0"', combined), combined


def test_json_format_has_every_documented_value(access_lines: list[str], cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    with running_server(hello_app, access_log=True, access_log_format="json", **options) as server:
        # Its own context: httpcore sets ALPN (h2) on the one it is given, and the shared
        # client_context must stay HTTP/1.1-only for the WebSocket tests that follow.
        with httpx.Client(verify=ssl.create_default_context(cafile=cert_files.ca), http2=True) as client:
            client.get(f"{server.url}/p?q=1", headers={"x-request-id": "abc-123", "user-agent": "probe"})
        entry = json.loads(wait_for_lines(access_lines, 1)[0])
    assert entry["client"].startswith("127.0.0.1:")
    assert (entry["method"], entry["path"], entry["query"]) == ("GET", "/p", "q=1")
    assert (entry["status"], entry["bytes"], entry["http_version"]) == (200, 5, "2")
    assert (entry["scheme"], entry["tls_version"], entry["host"]) == ("https", "TLSv1.3", f"127.0.0.1:{server.port}")
    assert (entry["user_agent"], entry["referer"], entry["request_id"]) == ("probe", "-", "abc-123")
    assert entry["outcome"] == "complete"
    assert isinstance(entry["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time_iso"])


def test_template_fields_and_generated_request_ids(access_lines: list[str]) -> None:
    template = "{method} {path} {query} {status} {bytes} {tls_version} {request_id} {{literal}} {pid}"
    with running_server(hello_app, access_log=True, access_log_format=template) as server:
        with httpx.Client() as client:
            client.get(f"{server.url}/one?a=b")
            client.get(f"{server.url}/two")
            client.get(f"{server.url}/three", headers={"x-request-id": "from-proxy"})
        lines = wait_for_lines(access_lines, 3)
    first, second, third = (line.split(" ") for line in lines)
    assert first[:6] == ["GET", "/one", "a=b", "200", "5", "-"]
    assert second[:2] == ["GET", "/two"] and second[2] == ""  # an empty query is an empty field
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", first[6]) and first[6] != second[6]
    assert first[6].split("-")[0] == second[6].split("-")[0]  # one prefix per process
    assert third[6] == "from-proxy"
    assert "{literal}" in lines[0]


def test_every_field_renders_and_request_ids_are_cut() -> None:
    formatter = AccessLogFormatter(" ".join("{" + name + "}" for name in ACCESS_LOG_FIELDS))
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "http_version": "1.1",
        "headers": [(b"x-request-id", b"r" * 500)],
        "client": ("::1", 5000),
    }
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        formatter.log(scope, 200, 0, 0.001)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    line = records[0].getMessage()
    assert line.startswith("[::1]:5000 ::1 GET /x  /x /x 200 0 0.001000 1.0 1.1 - - - - - " + "r" * 200 + "... ")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{client} {agent}", "unknown field {agent}"),
        ("{client", "unclosed '{'"),
        ("client}", "unmatched '}'"),
        ("no fields at all", "choose default, common, combined, json or a {field} template"),
    ],
)
def test_bad_templates_are_config_errors(template: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="--access-log-format") as caught:
        Config(access_log_format=template)
    assert problem in str(caught.value)


def test_unknown_field_stops_the_cli_with_one_line() -> None:
    result = run_gateway("--access-log-format", "{client} {agent}", "tests.apps.basic:app")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "unknown field {agent}" in result.stderr


def test_no_formatter_at_all_when_the_access_log_is_off(access_lines: list[str]) -> None:
    from gateway.context import ServerContext

    assert ServerContext(Config(access_log=False), hello_app).access_log is None
    assert ServerContext(Config(access_log=True), hello_app).access_log is not None


# -- unfinished exchanges -----------------------------------------------------------------


def streaming_app(pieces: int = 1000) -> Any:
    """Sends a head and body pieces slowly; stops quietly once cancelled (client reset)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(pieces):
                await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
                await asyncio.sleep(0.02)
        except (asyncio.CancelledError, OSError):
            return  # the client is gone: stop sending, as streaming views do
        await send({"type": "http.response.body", "body": b""})

    return app


def test_http2_reset_mid_response_is_an_info_access_line(
    access_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with running_server(streaming_app(), access_log=True) as server, FramePeer(server) as peer:
        peer.request(1, b"/stream")
        peer.read_until(lambda frame: isinstance(frame, DataFrame) and frame.stream_id == 1)
        peer.send(RstStreamFrame(1, error_code=8))  # CANCEL
        line = wait_for_lines(access_lines, 1)[0]
        time.sleep(0.2)  # a wrong ERROR line would come right after
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /stream HTTP/2" 200 \d+ \d+\.\dms \(client closed\)', line), line
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert errors == []


def test_http2_reset_before_the_response_head_logs_499(
    access_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    async def thinks(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        try:
            await asyncio.sleep(30)  # still working on the response when the reset comes
        except asyncio.CancelledError:
            return

    with running_server(thinks, access_log=True, access_log_format="{status} {outcome} {http_version}") as server:
        with FramePeer(server) as peer:
            peer.request(1, b"/slow")
            time.sleep(0.2)
            peer.send(RstStreamFrame(1, error_code=8))
            line = wait_for_lines(access_lines, 1)[0]
            time.sleep(0.2)
    assert line == "499 client closed 2"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_http1_close_before_the_response_logs_499(access_lines: list[str], caplog: pytest.LogCaptureFixture) -> None:
    async def waits_for_disconnect(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        while (await receive())["type"] != "http.disconnect":
            pass

    with running_server(waits_for_disconnect, access_log=True, access_log_format="json") as server:
        with RawClient(server.port) as client:
            client.request(target="/never")
            time.sleep(0.1)
        entry = json.loads(wait_for_lines(access_lines, 1)[0])
    assert (entry["path"], entry["status"], entry["bytes"], entry["outcome"]) == ("/never", 499, 0, "client closed")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_http1_close_mid_response_keeps_the_status_sent(access_lines: list[str]) -> None:
    with running_server(streaming_app(), access_log=True, access_log_format="json") as server:
        with RawClient(server.port) as client:
            client.request(target="/stream")
            client.sock.settimeout(5)
            assert client.sock.recv(100).startswith(b"HTTP/1.1 200")
        entry = json.loads(wait_for_lines(access_lines, 1)[0])
    assert (entry["status"], entry["outcome"]) == (200, "client closed")
    assert entry["bytes"] > 0


def test_app_failure_after_the_head_is_logged_as_aborted(
    access_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    async def fails_midway(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    with running_server(fails_midway, access_log=True) as server:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.url}/fails")
        line = wait_for_lines(access_lines, 1)[0]
    assert line.endswith("(aborted)") and '"GET /fails HTTP/1.1" 200 7 ' in line, line
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == [
        f"Exception in ASGI application ({line.split(' ')[0]} GET /fails)"
    ]


def test_websocket_handshake_line_over_tls(access_lines: list[str], cert_files: CertFiles) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    async def accepts(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass

    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    template = "{method} {path} {status} {scheme} {tls_version}"
    with running_server(accepts, access_log=True, access_log_format=template, **options) as server:
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            sock = context.wrap_socket(raw, server_hostname="localhost")
            ws = WSConnection(ConnectionType.CLIENT)
            sock.sendall(ws.send(Request(host="localhost", target="/chat")))
            ws.receive_data(sock.recv(4096))
            assert isinstance(next(ws.events()), AcceptConnection)
            line = wait_for_lines(access_lines, 1)[0]
            sock.close()
    assert line == "WEBSOCKET /chat 101 wss TLSv1.3"
