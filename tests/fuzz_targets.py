"""One fuzz input -> one checked run per adapter, for the fuzzers in fuzz/ and their replays.

A fuzzer's input is decoded by :func:`tests.fuzz_harness.chunks_from_fuzz_input` (cut
points, EOF flag, the byte stream). Each target raises AssertionError when an invariant
breaks; fuzz/run.py saves such inputs in tests/fuzz_regressions/<target>/ and
tests/test_fuzz_regressions.py replays every one of them.
"""

from __future__ import annotations

from collections.abc import Callable

from tests import test_fuzz_http1, test_fuzz_http2, test_fuzz_websocket
from tests.fuzz_harness import chunks_from_fuzz_input


def http1(data: bytes) -> None:
    """Any bytes to the HTTP/1.1 adapter (bit 4 of the first byte picks the second parser, if any)."""
    chunks, eof = chunks_from_fuzz_input(data)
    parsers = test_fuzz_http1.PARSERS
    parser = parsers[1 if len(parsers) > 1 and data[:1] and data[0] & 0x10 else 0]
    outcome = test_fuzz_http1.run(chunks, eof=eof, **parser)
    test_fuzz_http1.check_answered(outcome, eof)


def http2(data: bytes) -> None:
    """Any frames after the client preface to the HTTP/2 adapter."""
    chunks, _ = chunks_from_fuzz_input(data)
    outcome = test_fuzz_http2.run([test_fuzz_http2.PREFACE, *chunks])
    test_fuzz_http2.check_answered(outcome, client_sent_goaway=test_fuzz_http2.sends_goaway(b"".join(chunks)))


def websocket(data: bytes) -> None:
    """Any bytes after a WebSocket handshake (bit 4 of the first byte offers compression)."""
    chunks, eof = chunks_from_fuzz_input(data)
    deflate = bool(data[:1]) and bool(data[0] & 0x10)
    outcome = test_fuzz_websocket.run(deflate, chunks, eof=eof)
    test_fuzz_websocket.check_answered(outcome, deflate, eof)


TARGETS: dict[str, Callable[[bytes], None]] = {"http1": http1, "http2": http2, "websocket": websocket}
