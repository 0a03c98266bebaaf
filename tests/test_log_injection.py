"""No client can forge a log line or put control characters in one (CVE-2020-7694's class).

Requests carry CR, LF, ESC, NUL, DEL and invalid UTF-8 in the path, the query, the user
agent and other headers, over real sockets (raw bytes where clients refuse to send them);
the tests read what the access log and the error log wrote (docs/logging.md, "Escaping").
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hyperframe.frame import HeadersFrame

from gateway.logs import escape, escape_bytes
from tests.apps.process import gateway_process
from tests.conftest import running_server
from tests.raw import RawClient
from tests.test_http2_peer import FramePeer

Scope = dict[str, Any]
FORGED_PATH = "/x%0A2026-12-04%2013:00:00%20[INFO]%20forged%1B[31m%0D%00%FF%5C%22"
# What the forged path must look like in a log line: one line, every dangerous byte spelled out.
FORGED_SHOWN = r"/x\n2026-12-04 13:00:00 [INFO] forged\x1b[31m\r\x00\xff\\\x22"
# HTTP/1.1 and HTTP/2 heads with control characters are refused (400) before any app runs; what does
# get through is obs-text (invalid UTF-8), quotes and backslashes.
H1_AGENT = b'agent "q" \\ \xff\xfe\xc3'
H1_AGENT_SHOWN = r"agent \x22q\x22 \\ \xff\xfe\xc3"
# Any control character, DEL, C1 control or lone surrogate in a log line is a failure.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["path"].startswith("/fail"):
        raise RuntimeError("the app failed on purpose")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def gateway_messages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """Every record the gateway loggers write during the test."""
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    records: list[logging.LogRecord] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collector = Collector(logging.DEBUG)
    gateway_logger = logging.getLogger("gateway")
    old_level = gateway_logger.level
    gateway_logger.setLevel(logging.DEBUG)
    gateway_logger.addHandler(collector)
    try:
        yield records
    finally:
        gateway_logger.removeHandler(collector)
        gateway_logger.setLevel(old_level)


def messages(records: list[logging.LogRecord], name: str, count: int, timeout: float = 5.0) -> list[str]:
    """Poll (bounded) for ``count`` messages of logger ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [record.getMessage() for record in records if record.name == name]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} {name} lines: {[record.getMessage() for record in records]}")


def assert_all_safe(records: list[logging.LogRecord]) -> None:
    for record in records:
        text = record.getMessage()
        assert not UNSAFE.search(text), text


# -- the escaping rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("/plain/path", "/plain/path"),
        ("/café/ü", "/café/ü"),  # printable non-ASCII stays readable
        ("a\nb\rc\td", r"a\nb\rc\td"),
        ("\x1b[31m\x00\x7f\x85", r"\x1b[31m\x00\x7f\x85"),
        ('back\\slash "quote"', r"back\\slash \x22quote\x22"),
        ("\u2028\u200b", r"\u2028\u200b"),  # line separator, zero-width space
        (b"\xff\xfe/\xc3".decode("utf-8", "surrogateescape"), r"\xff\xfe/\xc3"),
    ],
)
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def test_escape_bytes_decodes_utf8_and_spells_out_the_rest() -> None:
    assert escape_bytes("naïve".encode() + b"\xff\x1b") == r"naïve\xff\x1b"
    # Unambiguous: a literal backslash-x in the input never looks like an escaped byte.
    assert escape_bytes(b"\\xff") != escape_bytes(b"\xff")


# -- HTTP/1.1 over a real socket ----------------------------------------------------------


def send_raw(port: int, request: bytes) -> bytes:
    with RawClient(port) as client:
        client.send(request)
        data, _ = client.read_until_closed(timeout=5)
        return data


def test_http1_path_query_and_headers_cannot_forge_access_lines(gateway_messages: list[logging.LogRecord]) -> None:
    request = (
        f"GET {FORGED_PATH}?q=%0A%1B&r=%FF HTTP/1.1\r\n".encode()
        + b"Host: 127.0.0.1\r\nUser-Agent: "
        + H1_AGENT
        + b"\r\nReferer: ref\xe2\x80\xa8x\r\nX-Request-ID: id\x80x\r\nConnection: close\r\n\r\n"
    )
    template = "{method} {path} {query} {target} {user_agent} {referer} {request_id}"
    with running_server(echo_app, access_log=True, access_log_format=template) as server:
        assert send_raw(server.port, request).startswith(b"HTTP/1.1 200")
        (line,) = messages(gateway_messages, "gateway.access", 1)
    assert line == (
        f"GET {FORGED_SHOWN} q=%0A%1B&r=%FF {FORGED_PATH}?q=%0A%1B&r=%FF "
        rf"{H1_AGENT_SHOWN} ref\u2028x id\x80x"
    )
    assert_all_safe(gateway_messages)


def test_default_format_escapes_the_forged_path(gateway_messages: list[logging.LogRecord]) -> None:
    with running_server(echo_app, access_log=True) as server:
        send_raw(server.port, f"GET {FORGED_PATH} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        (line,) = messages(gateway_messages, "gateway.access", 1)
    assert f'"GET {FORGED_SHOWN} HTTP/1.1" 200 2 ' in line
    assert_all_safe(gateway_messages)


def test_json_lines_stay_one_valid_line(gateway_messages: list[logging.LogRecord]) -> None:
    request = f"GET {FORGED_PATH} HTTP/1.1\r\nHost: a\r\nUser-Agent: ".encode() + H1_AGENT + b"\r\n\r\n"
    with running_server(echo_app, access_log=True, access_log_format="json") as server:
        send_raw(server.port, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        (line,) = messages(gateway_messages, "gateway.access", 1)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["path"] == FORGED_SHOWN
    assert entry["user_agent"] == H1_AGENT_SHOWN
    assert_all_safe(gateway_messages)


def test_error_log_request_descriptions_are_escaped(gateway_messages: list[logging.LogRecord]) -> None:
    with running_server(echo_app) as server:
        send_raw(server.port, f"GET /fail{FORGED_PATH} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        errors = messages(gateway_messages, "gateway.error", 3)
    failure = next(text for text in errors if text.startswith("Exception in ASGI application"))
    assert f"GET /fail{FORGED_SHOWN})" in failure
    assert_all_safe(gateway_messages)


# -- HTTP/2 over a real socket (raw frames: h2 clients refuse these bytes) ------------------


def test_http2_raw_bytes_in_path_query_and_headers(gateway_messages: list[logging.LogRecord]) -> None:
    template = "{path} {query} {user_agent} {host}"
    with running_server(echo_app, access_log=True, access_log_format=template) as server, FramePeer(server) as peer:
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/h2%1b[31m%0a\xff?q=\xfe%0d"),
            (b":authority", b"host\xc3name"),
            (b"user-agent", H1_AGENT),
        ]
        frame = HeadersFrame(1, peer.block(headers))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        peer.send(frame)
        peer.response(1)
        (line,) = messages(gateway_messages, "gateway.access", 1)
    # A raw (not percent-encoded) byte in the path reaches the scope as its Latin-1 character
    # (gateway.asgi.decode_path), which is printable: ÿ, not \xff.
    assert line == rf"/h2\x1b[31m\nÿ q=\xfe%0d {H1_AGENT_SHOWN} host\xc3name"
    assert_all_safe(gateway_messages)


# -- a real log file, through the command line ---------------------------------------------


def test_log_file_has_one_line_per_request(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    with gateway_process("--port", "0", "--access-log-file", str(log_file), "tests.apps.basic:app") as server:
        port = int(server.url.rsplit(":", 1)[1])
        for target in (FORGED_PATH, "/plain", FORGED_PATH + "?a=%0D%0A"):
            request = f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nUser-Agent: ".encode()
            send_raw(port, request + H1_AGENT + b"\r\n\r\n")
        deadline = time.monotonic() + 5
        while log_file.read_bytes().count(b"\n") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    data = log_file.read_bytes()
    text = data.decode("utf-8")  # strict: no raw invalid UTF-8 reached the file
    lines = text.splitlines()
    assert len(lines) == 3, lines
    assert not UNSAFE.search(text.replace("\n", ""))
    assert f'"GET {FORGED_SHOWN} HTTP/1.1"' in lines[0]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] 127\.0\.0\.1:\d+ - ", line) for line in lines)
