"""The rules of --compress without I/O: Accept-Encoding, eligibility, field changes, the filter."""

from __future__ import annotations

import asyncio
import io
import zlib

import pytest

from gateway.compression import Compression, GzipEncoder, available_encoders
from gateway.compression_rules import (
    MediaTypes,
    choose_coding,
    compressible,
    encoded_headers,
    fields_by_name,
    parse_accept_encoding,
    vary_accept_encoding,
)
from gateway.config import Config, ConfigError
from gateway.events import Body, EndBody, FileBody, OutboundEvent, Response, StreamAborted, Trailers
from gateway.response_options import DEFAULT_COMPRESS_TYPES
from gateway.streams.response_filter import COMPRESS_STEP, ResponseFilter

SERVER_ORDER = ("zstd", "br", "gzip")


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (None, {}),
        (b"", {}),
        (b"gzip", {"gzip": 1.0}),
        (b"GZIP;Q=0.5 , br ; q=1.000", {"gzip": 0.5, "br": 1.0}),
        (b"x-gzip;q=0.3", {"gzip": 0.3}),
        (b"*;q=0", {"*": 0.0}),
        (b"gzip;q=1.5, br;q=0.1234, zstd;q=abc, deflate;q=-1", {"gzip": 0.0, "br": 0.0, "zstd": 0.0, "deflate": 0.0}),
        (b"gzip;q=0., br;q=1.", {"gzip": 0.0, "br": 1.0}),
        (b",, gzip,", {"gzip": 1.0}),
        (b"gzip;level=9", {"gzip": 1.0}),
    ],
)
def test_parse_accept_encoding(field: bytes | None, expected: dict[str, float]) -> None:
    assert parse_accept_encoding(field) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (None, None),  # no field: identity (clients that send none rarely decode)
        (b"", None),
        (b"identity", None),
        (b"gzip", "gzip"),
        (b"gzip, br, zstd", "zstd"),  # equals: the server's order
        (b"gzip, br", "br"),
        (b"gzip;q=1, br;q=0.9", "gzip"),  # the client's order wins over ours
        (b"zstd;q=0, *", "br"),
        (b"*;q=0", None),
        (b"*", "zstd"),
        (b"*;q=0.5, gzip", "gzip"),
        (b"gzip;q=0", None),
        (b"identity;q=1, gzip;q=0.5", None),  # the client prefers no coding
        (b"identity;q=0.5, gzip;q=0.5", "gzip"),
        (b"*;q=0.9, gzip;q=0.5", "zstd"),
        (b"deflate, compress", None),
    ],
)
def test_choose_coding(field: bytes | None, expected: str | None) -> None:
    assert choose_coding(field, SERVER_ORDER) == expected


def test_choose_coding_with_gzip_only() -> None:
    assert choose_coding(b"zstd, br, gzip;q=0.1", ("gzip",)) == "gzip"
    assert choose_coding(b"zstd, br", ("gzip",)) is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"text/html; charset=utf-8", True),
        (b"TEXT/CSV", True),
        (b"application/json", True),
        (b"application/ld+json", True),
        (b"application/rss+xml", True),
        (b"image/svg+xml", True),
        (b"application/wasm", True),
        (b"image/png", False),
        (b"application/octet-stream", False),
        (b"application/zip", False),
        (b"font/woff2", False),
        (b"video/mp4", False),
        (b"application/jsonx", False),
        (b"+json", False),
    ],
)
def test_default_media_types(content_type: bytes, expected: bool) -> None:
    assert MediaTypes(DEFAULT_COMPRESS_TYPES).matches(content_type) is expected


def test_compressible() -> None:
    types = MediaTypes(["text/*"])
    html = {b"content-type": b"text/html"}
    assert compressible(200, html, types, 1024)
    assert compressible(404, html, types, 1024)
    assert compressible(200, {**html, b"content-length": b"1024"}, types, 1024)
    assert not compressible(200, {**html, b"content-length": b"1023"}, types, 1024)
    for status in (204, 206, 304):
        assert not compressible(status, html, types, 0)
    assert not compressible(200, {**html, b"content-encoding": b"gzip"}, types, 0)
    assert not compressible(200, {**html, b"content-range": b"bytes 0-1/2"}, types, 0)
    assert not compressible(200, {**html, b"cache-control": b"public, NO-TRANSFORM"}, types, 0)
    assert compressible(200, {**html, b"cache-control": b"no-transformation-please"}, types, 0)
    assert not compressible(200, {b"content-type": b"image/png"}, types, 0)
    assert not compressible(200, {}, types, 0)


def test_vary_is_merged() -> None:
    assert vary_accept_encoding([]) == [(b"vary", b"Accept-Encoding")]
    assert vary_accept_encoding([(b"Vary", b"Cookie")]) == [(b"Vary", b"Cookie, Accept-Encoding")]
    assert vary_accept_encoding([(b"vary", b"accept-encoding")]) == [(b"vary", b"accept-encoding")]
    assert vary_accept_encoding([(b"vary", b"*")]) == [(b"vary", b"*")]
    assert vary_accept_encoding([(b"vary", b"")]) == [(b"vary", b"Accept-Encoding")]


def test_encoded_headers() -> None:
    headers = [
        (b"content-type", b"text/html"),
        (b"Content-Length", b"20000"),
        (b"ETag", b'"v1"'),
        (b"accept-ranges", b"bytes"),
        (b"x-other", b"kept"),
    ]
    assert encoded_headers(headers, "br") == [
        (b"content-type", b"text/html"),
        (b"ETag", b'W/"v1"'),
        (b"x-other", b"kept"),
        (b"content-encoding", b"br"),
    ]
    assert encoded_headers([(b"etag", b'W/"v1"')], "gzip")[0] == (b"etag", b'W/"v1"')


def test_fields_by_name_joins_repeats() -> None:
    assert fields_by_name([(b"Cache-Control", b"public"), (b"cache-control", b"no-transform")]) == {
        b"cache-control": b"public, no-transform"
    }


def test_available_encoders_always_has_gzip_last() -> None:
    encoders = available_encoders()
    assert list(encoders)[-1] == "gzip"
    assert set(encoders) <= set(SERVER_ORDER)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"compress_types": ()}, "--compress-types needs at least one"),
        ({"compress_types": ("text",)}, "--compress-types 'text'"),
        ({"compress_types": ("*/*",)}, "--compress-types '*/*'"),
        ({"compress_types": ("text/ht ml",)}, "--compress-types"),
        ({"compress_min_size": -1}, "--compress-min-size"),
    ],
)
def test_config_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        Config(**changes)  # type: ignore[arg-type]


class RecordingSender:
    """What the adapter would receive from the filter."""

    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []

    async def stream_send(self, event: OutboundEvent) -> None:
        self.events.append(event)

    def body_consumed(self, stream_id: int, size: int) -> None:
        self.events.append(Body(stream_id, b"consumed %d" % size))


def gzip_filter(sender: RecordingSender, *, head_request: bool = False) -> ResponseFilter:
    compression = Compression(Config(compress=True), encoders={"gzip": GzipEncoder})
    return ResponseFilter(sender, None, compression, False, b"gzip", head_request)


def body_of(events: list[OutboundEvent]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Body))


def test_filter_compresses_a_large_message_in_steps() -> None:
    sender = RecordingSender()
    response_filter = gzip_filter(sender)
    data = bytes(range(256)) * (COMPRESS_STEP // 64)  # 4 steps of hard-to-compress bytes

    async def run() -> None:
        await response_filter.stream_send(Response(1, 200, [(b"content-type", b"text/plain")]))
        await response_filter.stream_send(Body(1, data))
        pieces = len(sender.events) - 1
        assert pieces >= 2, "one piece per step, not the whole message at once"
        await response_filter.stream_send(Trailers(1, [(b"x", b"y")]))

    asyncio.run(run())
    assert isinstance(sender.events[-1], Trailers)
    assert zlib.decompress(body_of(sender.events), 16 + zlib.MAX_WBITS) == data


def test_filter_reads_files_in_bounded_steps() -> None:
    reads: list[int] = []

    class CountingFile(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(size or -1)
            return super().read(size)

    content = b"static text " * 100_000
    sender = RecordingSender()
    response_filter = gzip_filter(sender)

    async def run() -> None:
        await response_filter.stream_send(Response(1, 200, [(b"content-type", b"text/plain")]))
        await response_filter.stream_send(FileBody(1, CountingFile(content), 12, len(content) - 12))
        await response_filter.stream_send(EndBody(1))

    asyncio.run(run())
    assert max(reads) <= COMPRESS_STEP and len(reads) > 10
    assert zlib.decompress(body_of(sender.events), 16 + zlib.MAX_WBITS) == content[12:]


def test_filter_head_request_and_abort() -> None:
    sender = RecordingSender()
    head_filter = gzip_filter(sender, head_request=True)

    async def head() -> None:
        await head_filter.stream_send(Response(1, 200, [(b"content-type", b"text/plain")]))
        await head_filter.stream_send(EndBody(1))

    asyncio.run(head())
    response = sender.events[0]
    assert isinstance(response, Response) and (b"content-encoding", b"gzip") in response.headers
    assert sender.events[1:] == [EndBody(1)]  # no gzip trailer on a HEAD answer

    sender = RecordingSender()
    aborting = gzip_filter(sender)

    async def abort() -> None:
        await aborting.stream_send(Response(1, 200, [(b"content-type", b"text/plain")]))
        await aborting.stream_send(Body(1, b"partial"))
        await aborting.stream_send(StreamAborted(1))

    asyncio.run(abort())
    assert sender.events[-1] == StreamAborted(1)
    aborting.body_consumed(1, 5)
    assert sender.events[-1] == Body(1, b"consumed 5")
