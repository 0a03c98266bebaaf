"""Malformed, oversized, slow and smuggling-shaped requests against the real server.

Raw sockets send exactly the bytes under test. Every rejection must be an exact status and
a closed connection, logged for operators at info/debug level without a traceback (client
misbehaviour is not a server error, STYLE rule 10).
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator

import pytest

from tests.apps.http1 import echo
from tests.conftest import RunningServer, running_server
from tests.raw import RawClient, get, status_of

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")

MAX_HEADER_SIZE = 2048
MAX_BODY_SIZE = 1000
HEADER_TIMEOUT = 0.5
KEEP_ALIVE_TIMEOUT = 0.3


@pytest.fixture(scope="module")
def server(http1_parser: str) -> Iterator[RunningServer]:
    with running_server(
        echo,
        max_header_size=MAX_HEADER_SIZE,
        max_body_size=MAX_BODY_SIZE,
        header_timeout=HEADER_TIMEOUT,
        keep_alive_timeout=KEEP_ALIVE_TIMEOUT,
    ) as running:
        yield running


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.LogCaptureFixture]:
    """caplog for ``gateway.*``; afterwards, checks that nothing was logged as a server error."""
    # gateway.logs.configure_logging (run in-process by other tests) stops propagation.
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="gateway")
    yield caplog
    gateway_records = [record for record in caplog.records if record.name.startswith("gateway")]
    assert not [record for record in gateway_records if record.exc_info], "client errors logged a traceback"
    assert all(record.levelno <= logging.INFO for record in gateway_records), [
        record.getMessage() for record in gateway_records
    ]


def rejected(server: RunningServer, request: bytes) -> tuple[int, bytes]:
    """Send ``request``; return the status and the body of the answer, which must close."""
    with RawClient(server.port) as client:
        client.send(request)
        data, closed = client.read_until_closed(3.0)
    assert closed, f"connection still open after {data!r}"
    return status_of(data), data.partition(b"\r\n\r\n")[2]


def assert_rejection_logged(logs: pytest.LogCaptureFixture, status: int) -> None:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if any(f"rejected request: {status}" in record.getMessage() for record in logs.records):
            return
        time.sleep(0.01)
    raise AssertionError(f"no 'rejected request: {status}' log line in {[r.getMessage() for r in logs.records]}")


HEAD = b"GET / HTTP/1.1\r\nhost: x\r\n"

MALFORMED = {
    "request line without version": (b"GARBAGE\r\n\r\n", 400),
    "request line with two spaces": (b"GET  / HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    "header line without colon": (HEAD + b"no colon here\r\n\r\n", 400),
    "space in header name": (HEAD + b"bad name: v\r\n\r\n", 400),
    "space before colon": (HEAD + b"x-a : v\r\n\r\n", 400),
    "HTTP/1.1 without host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "Transfer-Encoding gzip": (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n", 501),
    # RFC 9110 §9.3.6: a tunnel is a proxy's job; the app would get an authority-form target.
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n", 501),
}

# Request smuggling (RFC 9112 §11.2): any head on whose length two parsers could disagree.
SMUGGLING = {
    "obs-fold": (HEAD + b"x-a: 1\r\n  folded\r\n\r\n", 400),
    "obs-fold with tab": (HEAD + b"x-a: 1\r\n\tfolded\r\n\r\n", 400),
    "Content-Length list": (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n\r\nhello", 400),
    "two Content-Length lines": (
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        400,
    ),
    "Content-Length +5": (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\nhello", 400),
    "Content-Length 0x5": (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0x5\r\n\r\nhello", 400),
    "Content-Length -1": (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n", 400),
    "Content-Length and Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "Transfer-Encoding chunked, gzip": (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        501,
    ),
    "Transfer-Encoding gzip, chunked": (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "two Transfer-Encoding lines": (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "chunk size not hex": (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    # The bytes after a chunk's data must be CRLF (h11 before 0.16 did not check: CVE-2025-43859).
    "chunk data not followed by CRLF": (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    "bare LF line endings": (b"GET / HTTP/1.1\nhost: x\n\n", 400),
    "bare LF in one header line": (HEAD + b"x-a: 1\nx-b: 2\r\n\r\n", 400),
    "control character \\x01 in a value": (HEAD + b"x-a: a\x01b\r\n\r\n", 400),
    "DEL \\x7f in a value": (HEAD + b"x-a: a\x7fb\r\n\r\n", 400),
    "NUL in a value": (HEAD + b"x-a: a\x00b\r\n\r\n", 400),
    "bare CR in a value": (HEAD + b"x-a: a\rb\r\n\r\n", 400),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\nhost: x\r\n\r\n", 505),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nhost: x\r\n\r\n", 505),
    "HTTP/0.9 version": (b"GET / HTTP/0.9\r\n\r\n", 505),
    "HTTP/0.9 style request": (b"GET /\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests(name: str, server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    request, expected = MALFORMED[name]
    assert rejected(server, request)[0] == expected
    assert_rejection_logged(logs, expected)


@pytest.mark.parametrize("name", list(SMUGGLING))
def test_smuggling_defences(name: str, server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    request, expected = SMUGGLING[name]
    assert rejected(server, request)[0] == expected
    assert_rejection_logged(logs, expected)


def test_valid_request_still_served(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    # The same server answers ordinary requests: the rejections above are not a broken server.
    status, body = get(server.port, "/fine")
    assert status == 200 and b'"/fine"' in body


def test_head_too_large(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    filler = b"x-filler: " + b"a" * MAX_HEADER_SIZE + b"\r\n"
    assert rejected(server, HEAD + filler + b"\r\n")[0] == 431
    assert_rejection_logged(logs, 431)


def test_head_too_large_before_it_ends(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    # No blank line yet: the server must not wait for one past the limit.
    many = b"".join(b"x-h%d: value\r\n" % index for index in range(MAX_HEADER_SIZE // 10))
    assert rejected(server, HEAD + many)[0] == 431


def test_content_length_over_limit_is_refused_before_the_body(
    server: RunningServer, logs: pytest.LogCaptureFixture
) -> None:
    with RawClient(server.port) as client:
        # Only the head: a 413 can only come back if the server answers without the body.
        client.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1))
        data, closed = client.read_until_closed(3.0)
    assert status_of(data) == 413 and closed
    assert_rejection_logged(logs, 413)


def test_content_length_at_limit_is_accepted(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    with RawClient(server.port) as client:
        client.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % MAX_BODY_SIZE)
        client.send(b"b" * MAX_BODY_SIZE)
        response, body = client.response()
    assert response.status_code == 200 and b'"body_length": 1000' in body


def test_chunked_body_over_limit(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    chunk = b"c" * 400
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
    status, _ = rejected(server, b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
    assert status == 413
    assert_rejection_logged(logs, 413)


def test_slowloris_head_is_cut_off(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    request = HEAD + b"x-slow: " + b"s" * 100
    started = time.monotonic()
    closed_at = None
    answer = b""
    with RawClient(server.port) as client:
        # One byte every 50 ms: each byte is progress, but the head as a whole is late.
        for byte in request:
            try:
                client.send(bytes([byte]))
                if select.select([client.sock], [], [], 0.05)[0]:
                    answer = client.sock.recv(4096)
                    if not answer:
                        closed_at = time.monotonic()
                        break
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
    assert answer == b""
    assert closed_at is not None, "the server kept a slow head open"
    assert HEADER_TIMEOUT * 0.8 <= closed_at - started < HEADER_TIMEOUT + 2.0


def test_idle_keep_alive_connection_is_closed(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    with RawClient(server.port) as client:
        client.request(target="/first")
        assert client.response()[0].status_code == 200
        answered = time.monotonic()
        assert client.is_closed(3.0)
        idle = time.monotonic() - answered
    assert KEEP_ALIVE_TIMEOUT * 0.8 <= idle < KEEP_ALIVE_TIMEOUT + 2.0


def test_silent_connection_is_closed(server: RunningServer, logs: pytest.LogCaptureFixture) -> None:
    with RawClient(server.port) as client:
        connected = time.monotonic()
        assert client.is_closed(3.0)
        waited = time.monotonic() - connected
    assert HEADER_TIMEOUT * 0.8 <= waited < HEADER_TIMEOUT + 2.0
