"""Microbenchmark of one access-log line: the formats of gateway/access_log.py against the
line-writing code asgigw had before them (``before`` below), measured in the same run.

    python -m benchmarks.access_log [--calls 20000] [--rounds 7]

Every variant goes through the real ``gateway.access`` logger and a stream handler with the
CLI's formatter, writing to the null device, so the figures include what an operator pays
per request (record creation, formatting, the write call). Rounds are interleaved and the
median per call is reported, with the ratio to ``before`` (1.00 = as fast).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from gateway.access_log import AccessLogFormatter, _default_line
from gateway.logs import address_label

access_logger = logging.getLogger("gateway.access")


def before(scope: MutableMapping[str, Any], status: int, size: int, duration: float) -> None:
    """The access line as asgigw wrote it before formats and escaping (the reference)."""
    path = scope["path"]
    query = scope.get("query_string")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d %d %.1fms',
        address_label(scope.get("client")),
        scope.get("method", "WEBSOCKET"),
        path,
        scope["http_version"],
        status,
        size,
        duration * 1000.0,
    )


def before_line(scope: MutableMapping[str, Any], status: int, size: int, duration: float) -> str:
    """What ``before`` makes the handler format: the string alone, without logging."""
    path = scope["path"]
    query = scope.get("query_string")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    return '%s - "%s %s HTTP/%s" %d %d %.1fms' % (  # noqa: UP031 - as logging formats it
        address_label(scope.get("client")),
        scope.get("method", "WEBSOCKET"),
        path,
        scope["http_version"],
        status,
        size,
        duration * 1000.0,
    )


def scope_for(path: str, query: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"example.com"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"),
        (b"accept", b"text/html"),
        (b"referer", b"https://example.com/list"),
    ]
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "http_version": "1.1",
        "scheme": "https",
        "headers": headers,
        "client": ("203.0.113.7", 50312),
        "extensions": {"tls": {"tls_version": 0x0304}},
    }


def per_call_ns(function: Callable[[], None], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()

    sink = open(os.devnull, "w")
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    access_logger.handlers[:] = [handler]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False

    plain = scope_for("/items/42", b"page=2")
    hostile = scope_for("/x\n2026-12-04 13:00:00 [INFO] forged\x1b[31m", b"q=%0A")
    formatters = {name: AccessLogFormatter(name) for name in ("default", "common", "combined", "json")}
    template = AccessLogFormatter("{client} {method} {path_query} {status} {bytes} {duration_ms} {request_id}")
    variants: dict[str, Callable[[], None]] = {
        "before (reference)": lambda: before(plain, 200, 1432, 0.0008),
        "default": lambda: formatters["default"].log(plain, 200, 1432, 0.0008),
        "common": lambda: formatters["common"].log(plain, 200, 1432, 0.0008),
        "combined": lambda: formatters["combined"].log(plain, 200, 1432, 0.0008),
        "json": lambda: formatters["json"].log(plain, 200, 1432, 0.0008),
        "template (7 fields)": lambda: template.log(plain, 200, 1432, 0.0008),
        "default, hostile path": lambda: formatters["default"].log(hostile, 200, 1432, 0.0008),
        # The string alone, without the logging call: what the escaping adds.
        "line only: before": lambda: before_line(plain, 200, 1432, 0.0008) and None,
        "line only: default": lambda: _default_line(plain, 200, 1432, 0.0008, "complete") and None,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(options.rounds):
        for name, function in variants.items():
            results[name].append(per_call_ns(function, options.calls))
    sink.close()
    print(f"{'variant':<24} {'ns/line (median)':>17} {'vs before':>10}")
    for name, samples in results.items():
        peer = "line only: before" if name.startswith("line only") else "before (reference)"
        median = statistics.median(samples)
        print(f"{name:<24} {median:>17.0f} {median / statistics.median(results[peer]):>10.2f}")


if __name__ == "__main__":
    main()
