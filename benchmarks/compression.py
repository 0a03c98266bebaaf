"""The cost of ``--compress``: a ~20 KB HTML page served by asgigw with and without it.

uvicorn and hypercorn have no server-side compression, so this compares asgigw with itself:
``off`` (no ``--compress``; the client still sends Accept-Encoding) and one run per coding
the installation has (gzip; br and zstd with ``asgigw[compress]``), each with h2load over
TLS, as HTTP/1.1 (``--h1``, 16 connections, no pipelining) and HTTP/2 (16 connections, 32
streams each). Reported per run: req/s, the server's CPU µs per request (``/proc``), and
bytes per response on the wire (h2load's DATA/body bytes over requests, headers apart).
Codings and protocols are interleaved round by round; medians over the rounds. Run from
the repository root::

    python -m benchmarks.compression --rounds 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import servers
from gateway.compression import available_encoders

APP = "benchmarks.compression:app"
PAGE = b"".join(
    b'<tr><td class="id">%d</td><td class="name">Item number %d</td><td class="price">%d.%02d EUR</td></tr>\n'
    % (n, n * 7919 % 10007, n * 31 % 500, n % 100)
    for n in range(195)
)
PAGE = b"<!doctype html>\n<html><head><title>Items</title></head><body><table>\n" + PAGE + b"</table></body></html>\n"
HEADERS = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(PAGE))]
PROTOCOLS = {"http/1.1": ["--h1", "-c", "16", "-m", "1"], "h2": ["-c", "16", "-m", "32"]}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Every HTTP request gets the same ~20 KB HTML page with a Content-Length."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PAGE})


def start(pool: servers.ServerPool, compress: bool, tls: servers.TLSFiles) -> servers.ServerProcess:
    """asgigw with the same flags as the other benchmarks, serving this module's page."""
    options = servers.Options(port=servers.free_port(), tls=tls, keep_alive=30)
    argv = [*servers.asgigw_argv(options)[:-1], *(["--compress"] if compress else []), APP]
    server = servers.ServerProcess("asgigw", servers.pinned(argv, pool.server_core), options, pool._logs.name)
    pool.running.append(server)
    server.wait_ready()
    return server


def run_h2load(url: str, protocol: str, coding: str, requests: int, core: int | None) -> dict[str, float]:
    """One bounded h2load run: req/s and body bytes per response."""
    accept = "gzip, br, zstd" if coding == "off" else coding
    argv = ["h2load", "-t", "1", *PROTOCOLS[protocol], "-n", str(requests), "-H", f"accept-encoding: {accept}", url]
    finished = subprocess.run(servers.pinned(argv, core), capture_output=True, text=True, timeout=300, check=False)
    out = finished.stdout
    speed = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?, .*?\((\d+)\) data", out)
    if finished.returncode != 0 or speed is None or counts is None or traffic is None:
        raise RuntimeError(f"h2load failed ({finished.returncode}): {finished.stderr.strip() or out}")
    succeeded = int(counts.group(1))
    return {
        "req_per_s": float(speed.group(1)),
        "body_bytes": int(traffic.group(3)) / max(1, succeeded),
        "total_bytes": int(traffic.group(1)) / max(1, succeeded),
        "failed": int(counts.group(2)),
    }


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, float]]]]:
    server_core, load_core = servers.cores()
    codings = ["off", *reversed(available_encoders())]  # off, gzip, br, zstd
    runs: dict[str, dict[str, list[dict[str, float]]]] = {p: {c: [] for c in codings} for p in PROTOCOLS}
    with servers.tls_files() as tls, servers.ServerPool(server_core) as pool:
        for round_index in range(args.rounds):
            order = codings[round_index % len(codings) :] + codings[: round_index % len(codings)]
            for coding in order:
                server = start(pool, coding != "off", tls)
                try:
                    for protocol in PROTOCOLS:
                        run_h2load(server.url, protocol, coding, max(16, args.requests // 10), load_core)  # warm-up
                        before = servers.cpu_seconds(server.pid)
                        result = run_h2load(server.url, protocol, coding, args.requests, load_core)
                        result["cpu_us"] = (servers.cpu_seconds(server.pid) - before) / args.requests * 1e6
                        runs[protocol][coding].append(result)
                        print(f"round {round_index + 1} {protocol:8} {coding:4} {result}", file=sys.stderr)
                finally:
                    pool.stop(server)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--requests", type=int, default=10000, help="requests per measured run (default 10000)")
    parser.add_argument("--json", type=Path, help="write raw runs here")
    args = parser.parse_args(argv)
    runs = measure(args)
    print(f"page: {len(PAGE)} bytes of HTML")
    print("\n| protocol | coding | median req/s | vs off | server CPU µs/request | body bytes/response | vs off |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for protocol, by_coding in runs.items():
        off = by_coding["off"]
        off_rate = statistics.median(r["req_per_s"] for r in off)
        off_bytes = statistics.median(r["body_bytes"] for r in off)
        for coding, results in by_coding.items():
            rate = statistics.median(r["req_per_s"] for r in results)
            cpu = statistics.median(r["cpu_us"] for r in results)
            size = statistics.median(r["body_bytes"] for r in results)
            failed = sum(r["failed"] for r in results)
            note = f" ({failed} failed)" if failed else ""
            print(
                f"| {protocol} | {coding} | {rate:,.0f}{note} | {rate / off_rate:.2f}x | {cpu:.0f} "
                f"| {size:,.0f} | {size / off_bytes:.3f}x |"
            )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
