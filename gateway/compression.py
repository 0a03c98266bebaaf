"""On-the-fly response compression (``--compress``): the encoder seam and the decision.

Encoders are chosen once at start-up by what is installed: gzip (zlib, always), br when
``brotli`` is importable and zstd when ``zstandard`` is (the ``asgigw[compress]`` extra).
Each is driven the same way: ``compress`` some bytes, ``flush`` at the end of each ASGI
body message so the client can decode everything sent so far (server-sent events and
streaming views still arrive in pieces), ``finish`` at the end of the body.
:class:`Compression` decides per response with the rules in
:mod:`gateway.compression_rules`; the stream layer's response filter runs the encoder.
Security: compressing secrets next to attacker-chosen text leaks them (BREACH), so this is
off by default; docs/compression.md says when it is safe.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol

from gateway.compression_rules import (
    MediaTypes,
    choose_coding,
    compressible,
    encoded_headers,
    fields_by_name,
    vary_accept_encoding,
)
from gateway.config import Config
from gateway.events import Headers

# Levels for compressing on every request, where CPU time counts as much as bytes; chosen
# on the benchmark's 20 KB HTML page (docs/compression.md). Each is the last level before
# a step that costs about twice the CPU for at most 6 % fewer bytes: gzip 3 (levels 4+
# switch to lazy matching; zlib's default 6 costs 3.5x as much), brotli 3 (4 costs 2x;
# 11 is for precompressing files), zstd 2 (its default 3 was slower and larger here: its
# tables are sized for large inputs).
GZIP_LEVEL = 3
BROTLI_QUALITY = 3
# A 256 KiB window: far larger than most pages, and a quarter of brotli's default memory.
BROTLI_WINDOW_BITS = 18
ZSTD_LEVEL = 2


class Encoder(Protocol):
    """One response body's compressor."""

    def compress(self, data: bytes) -> bytes:
        """Take ``data``; return what is ready (possibly nothing)."""

    def flush(self) -> bytes:
        """Everything taken so far, decodable by the client now; the stream goes on."""

    def finish(self) -> bytes:
        """The rest of the compressed body; the encoder is done."""


EncoderFactory = Callable[[], Encoder]


class GzipEncoder:
    """gzip (RFC 1952) by zlib; ``flush`` is Z_SYNC_FLUSH."""

    __slots__ = ("_compressor",)

    def __init__(self) -> None:
        # wbits 16 + 15: a gzip header and trailer around a deflate stream with a 32 KiB window.
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        """Take ``data``; return what is ready."""
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        """A sync flush: all input so far decodable, the stream goes on."""
        return self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The last block and the gzip trailer."""
        return self._compressor.flush(zlib.Z_FINISH)


def _brotli_factory() -> EncoderFactory | None:
    try:
        import brotli
    except ImportError:
        return None

    class BrotliEncoder:
        """br (RFC 7932) by the ``brotli`` package; ``flush`` is BROTLI_OPERATION_FLUSH."""

        __slots__ = ("_compressor",)

        def __init__(self) -> None:
            self._compressor = brotli.Compressor(
                mode=brotli.MODE_TEXT, quality=BROTLI_QUALITY, lgwin=BROTLI_WINDOW_BITS
            )

        def compress(self, data: bytes) -> bytes:
            """Take ``data``; return what is ready."""
            return bytes(self._compressor.process(data))

        def flush(self) -> bytes:
            """All input so far decodable, the stream goes on."""
            return bytes(self._compressor.flush())

        def finish(self) -> bytes:
            """The last meta-block."""
            return bytes(self._compressor.finish())

    return BrotliEncoder


def _zstd_factory() -> EncoderFactory | None:
    try:
        import zstandard
    except ImportError:
        return None

    class ZstdEncoder:
        """zstd (RFC 8878) by the ``zstandard`` package; ``flush`` ends a block."""

        __slots__ = ("_compressor",)

        def __init__(self) -> None:
            # A new context per response: a ZstdCompressor serves one operation at a time.
            self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

        def compress(self, data: bytes) -> bytes:
            """Take ``data``; return what is ready."""
            return self._compressor.compress(data)

        def flush(self) -> bytes:
            """End the block: all input so far decodable, the frame goes on."""
            return self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

        def finish(self) -> bytes:
            """End the frame."""
            return self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)

    return ZstdEncoder


def available_encoders() -> dict[str, EncoderFactory]:
    """The encoders this installation has, in the server's order of preference.

    Among codings a client rates equally, zstd is preferred (fastest at a similar size),
    then br (smallest), then gzip (every client has it).
    """
    encoders: dict[str, EncoderFactory] = {}
    zstd = _zstd_factory()
    if zstd is not None:
        encoders["zstd"] = zstd
    brotli = _brotli_factory()
    if brotli is not None:
        encoders["br"] = brotli
    encoders["gzip"] = GzipEncoder
    return encoders


class Compression:
    """``--compress`` and its options, built once at start-up; decides for each response.

    ``encoders`` defaults to :func:`available_encoders`; tests pass a smaller registry to
    check the gzip-only fallback of an installation without the extra.
    """

    __slots__ = ("_encoders", "_min_size", "_types", "codings")

    def __init__(self, config: Config, encoders: dict[str, EncoderFactory] | None = None) -> None:
        self._encoders = available_encoders() if encoders is None else dict(encoders)
        self.codings = tuple(self._encoders)
        self._types = MediaTypes(config.compress_types)
        self._min_size = config.compress_min_size

    def select(self, status: int, headers: Headers, accept_encoding: bytes | None) -> tuple[Headers, str | None]:
        """The response's fields and the coding to compress it with (None: as it is).

        A response that could be compressed gets ``Vary: Accept-Encoding`` whichever coding
        this client accepts, so that caches keep the variants apart (RFC 9110 §12.5.5).
        """
        if not compressible(status, fields_by_name(headers), self._types, self._min_size):
            return headers, None
        headers = vary_accept_encoding(headers)
        coding = choose_coding(accept_encoding, self.codings)
        if coding is None:
            return headers, None
        return encoded_headers(headers, coding), coding

    def encoder(self, coding: str) -> Encoder:
        """A new encoder for one response body."""
        return self._encoders[coding]()
