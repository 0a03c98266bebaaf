"""Static files without sockets: the HTTP rules (gateway/static_rules.py), path checks, and
the HTTP/1.1 adapter fed bytes through the FakeTransport harness."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import h11
import pytest

from gateway import static
from gateway.protocols.common import FileShrank, read_file_chunks
from gateway.protocols.http1_response import Framing, ResponseFramingError, ResponseWriter
from gateway.static import relative_parts
from gateway.static_rules import (
    RangeNotSatisfiable,
    accepted_codings,
    byte_range,
    content_type,
    entity_tag,
    if_range_holds,
    parse_http_date,
    precondition_status,
)
from tests.fake_transport import HTTP1Harness, Peer, response_parts

ETAG = entity_tag(1_700_000_000_000_000_000, 1234, None)
MODIFIED = 1_700_000_000
DATE = b"Tue, 14 Nov 2023 22:13:20 GMT"  # == MODIFIED


def test_entity_tags_differ_per_coding_and_are_strong() -> None:
    assert ETAG.startswith(b'"') and not ETAG.startswith(b"W/")
    assert entity_tag(1, 2, "br") != entity_tag(1, 2, "gzip") != entity_tag(1, 2, None)


def test_http_dates() -> None:
    assert parse_http_date(DATE) == MODIFIED
    assert parse_http_date(b"Tuesday, 14-Nov-23 22:13:20 GMT") == MODIFIED  # obsolete RFC 850 form
    assert parse_http_date(b"Tue Nov 14 22:13:20 2023") == MODIFIED  # asctime form
    assert parse_http_date(b"yesterday") is None
    assert parse_http_date(b"") is None


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, None),
        ({b"if-none-match": ETAG}, 304),
        ({b"if-none-match": b"W/" + ETAG}, 304),  # weak comparison for If-None-Match
        ({b"if-none-match": b'"a", ' + ETAG}, 304),
        ({b"if-none-match": b'"a"'}, None),
        ({b"if-modified-since": DATE}, 304),
        ({b"if-modified-since": b"Tue, 14 Nov 2023 22:13:19 GMT"}, None),
        ({b"if-none-match": b'"a"', b"if-modified-since": DATE}, None),  # tag wins over date
        ({b"if-match": ETAG}, None),
        ({b"if-match": b"W/" + ETAG}, 412),  # strong comparison for If-Match
        ({b"if-match": b"*"}, None),
        ({b"if-unmodified-since": b"Tue, 14 Nov 2023 22:13:19 GMT"}, 412),
        ({b"if-match": ETAG, b"if-unmodified-since": b"Mon, 01 Jan 2001 00:00:00 GMT"}, None),
        ({b"if-match": b'"a"', b"if-none-match": ETAG}, 412),  # If-Match is evaluated first
    ],
)
def test_precondition_order(fields: dict[bytes, bytes], status: int | None) -> None:
    assert precondition_status(fields, ETAG, MODIFIED) == status


def test_if_range() -> None:
    assert if_range_holds(ETAG, ETAG, MODIFIED)
    assert not if_range_holds(b"W/" + ETAG, ETAG, MODIFIED)
    assert not if_range_holds(b'"other"', ETAG, MODIFIED)
    assert if_range_holds(DATE, ETAG, MODIFIED)
    assert not if_range_holds(b"Tue, 14 Nov 2023 22:13:21 GMT", ETAG, MODIFIED)
    assert not if_range_holds(b"garbage", ETAG, MODIFIED)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"bytes=0-0", (0, 1)),
        (b"bytes=0-99", (0, 100)),
        (b"bytes=900-", (900, 1000)),
        (b"bytes=-1", (999, 1000)),
        (b"bytes=-5000", (0, 1000)),
        (b"bytes=10-5000", (10, 1000)),
        (b"BYTES = 1-2", (1, 3)),
        (b"bytes=1-2, ", (1, 3)),
        (b"bytes=1-" + b"9" * 50, (1, 1000)),
        (b"bytes=0-1,3-4", None),
        (b"bytes=5-4", None),
        (b"bytes=a-b", None),
        (b"bytes=1", None),
        (b"bytes=--1", None),
        (b"lines=1-2", None),
        (b"bytes=\xd9\xa1-2", None),  # non-ASCII digits
    ],
)
def test_byte_ranges(field: bytes, expected: tuple[int, int] | None) -> None:
    assert byte_range(field, 1000) == expected


@pytest.mark.parametrize("field", [b"bytes=1000-", b"bytes=5000-6000", b"bytes=-0", b"bytes=" + b"9" * 50 + b"-"])
def test_unsatisfiable_ranges(field: bytes) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(field, 1000)


def test_empty_file_ignores_ranges() -> None:
    assert byte_range(b"bytes=0-", 0) is None


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (None, {}),
        (b"br", {"br": 1.0, "gzip": 0.0}),
        (b"gzip;q=0.5, br;q=0", {"br": 0.0, "gzip": 0.5}),
        (b"x-gzip", {"br": 0.0, "gzip": 1.0}),
        (b"*", {"br": 1.0, "gzip": 1.0}),
        (b"*;q=0.2, br;q=0", {"br": 0.0, "gzip": 0.2}),
        (b"GZIP; Q=0.7", {"br": 0.0, "gzip": 0.7}),
        (b"br;q=2, gzip;q=nope", {"br": 0.0, "gzip": 0.0}),
    ],
)
def test_accept_encoding(field: bytes | None, expected: dict[str, float]) -> None:
    assert accepted_codings(field) == expected


def test_content_types_do_not_depend_on_the_registry() -> None:
    assert content_type("a.JS") == b"text/javascript; charset=utf-8"
    assert content_type("x.tar.gz") == b"application/gzip"
    assert content_type("noext") == b"application/octet-stream"
    assert content_type("archive.bz2") == b"application/octet-stream"


@pytest.mark.parametrize(
    ("rest", "parts"),
    [
        (b"app.js", ["app.js"]),
        (b"css/site.css", ["css", "site.css"]),
        (b"", ["index.html"]),
        (b"docs/", ["docs", "index.html"]),
        (b"caf%C3%A9.txt", ["café.txt"]),
        (b"a%20b.txt", ["a b.txt"]),
        (b"../x", None),
        (b"%2e%2e/x", None),
        (b"a/%2E/b", None),
        (b"a%2fb", None),
        (b"a%5Cb", None),
        (b"a%00", None),
        (b"a\\b", None),
        (b"/etc/passwd", None),
        (b"a//b", None),
        (b"C:/x", None),
        (b"c%3A%5Cx", None),
        (b".env", None),
        (b"a/.git/config", None),
        (b"x.", None),
        (b"x%20", None),
        (b"NUL", None),
        (b"lpt1.txt", None),
        (b"a%0ab", None),
        (b"%ff", None),
    ],
)
def test_relative_parts(rest: bytes, parts: list[str] | None) -> None:
    assert relative_parts(rest) == parts


def test_read_file_chunks_reads_bounded_pieces_and_detects_a_short_file() -> None:
    file = io.BytesIO(bytes(range(100)))
    assert list(read_file_chunks(file, 10, 25, 10)) == [
        bytes(range(10, 20)),
        bytes(range(20, 30)),
        bytes(range(30, 35)),
    ]
    with pytest.raises(FileShrank):
        list(read_file_chunks(io.BytesIO(b"short"), 0, 10, 4))


def test_file_body_framing() -> None:
    writer = ResponseWriter()
    writer.start(200, [(b"content-length", b"5")], body_allowed=True, http10=False, keep_alive=True)
    before, after, send = writer.file_body(5)
    assert before.startswith(b"HTTP/1.1 200 OK\r\n") and after == b"" and send
    assert writer.end(None) == b""
    writer.start(200, [(b"content-length", b"5")], body_allowed=True, http10=False, keep_alive=True)
    with pytest.raises(ResponseFramingError):
        writer.file_body(6)
    writer.start(200, [], body_allowed=True, http10=False, keep_alive=True)
    assert writer.framing is Framing.CHUNKED
    before, after, send = writer.file_body(300)
    assert before.endswith(b"\r\n\r\n12c\r\n") and after == b"\r\n" and send
    writer.start(200, [(b"content-length", b"5")], body_allowed=False, http10=False, keep_alive=True)
    assert writer.file_body(5)[2] is False


# -- the HTTP/1.1 adapter, fed bytes --------------------------------------------------


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not be called for a static file")


def serve(folder: Path, request: bytes, app: Any = never_called) -> tuple[list[Any], HTTP1Harness]:
    async def main() -> HTTP1Harness:
        harness = HTTP1Harness(app, static=(f"/s/={folder}",), lifespan="off")
        harness.feed(request)
        await harness.settle()
        return harness

    harness = asyncio.run(main())
    return Peer().events(harness.transport.take(), closed=harness.transport.closed), harness


def test_static_file_over_the_adapter(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    peer = Peer()
    events, harness = serve(tmp_path, peer.request(target="/s/a.txt", headers=[("range", "bytes=1-3")]))
    _, response, body, end = response_parts(events)
    assert response.status_code == 206 and body == b"ell" and end is not None
    assert dict(response.headers)[b"content-range"] == b"bytes 1-3/5"
    assert harness.transport.files_sent == 1 and not harness.transport.closed


def test_a_file_that_shrinks_mid_response_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.txt").write_bytes(b"x" * 1000)
    respond = static.StaticFiles.respond

    def respond_then_truncate(self: static.StaticFiles, *args: Any) -> static.StaticResponse | None:
        answer = respond(self, *args)
        (tmp_path / "a.txt").write_bytes(b"x" * 10)
        return answer

    monkeypatch.setattr(static.StaticFiles, "respond", respond_then_truncate)
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="gateway")
    with pytest.raises(h11.RemoteProtocolError):  # the client sees a truncated body
        serve(tmp_path, Peer().request(target="/s/a.txt"))
    warnings = [record for record in caplog.records if "stopped" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None
