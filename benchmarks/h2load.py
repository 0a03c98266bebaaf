"""HTTP/2 benchmarks with h2load (nghttp2-client): asgigw against hypercorn, granian and itself.

Scenarios, all ``h2load -c 16 -m 32`` from one thread pinned to its own core:

- ``tls-hello``: HTTP/2 over TLS (ALPN h2), the 13-byte hello world, req/s;
- ``h2c-hello``: cleartext HTTP/2 with prior knowledge, the same app, req/s;
- ``tls-stream``: HTTP/2 over TLS, a 10 MB body streamed in 64 KiB pieces, MB/s.

Servers: asgigw; ``asgigw-base``, the same command run from another checkout
(``--baseline DIR``, e.g. a worktree of the previous commit) to measure a change; hypercorn;
granian (Rust, when installed) as the ceiling. Servers and scenarios are interleaved round
by round so all see the same machine state; medians over the rounds are reported, with the
ratios of asgigw to each peer taken within each round (the steadier figure on a shared
machine), and the server's CPU time per request. Every run is bounded by a request count and
a timeout. Run from the repository root::

    git worktree add --detach ../base HEAD~1
    python -m benchmarks.h2load --rounds 3 --baseline ../base
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.app import app as hello_app

STREAM_SIZE = 10 * 1024 * 1024
_CHUNK = b"x" * 65536
APP = "benchmarks.h2load:app"
SCENARIOS = {
    # name: (TLS?, path, requests per run)
    "tls-hello": (True, "/", 40000),
    "h2c-hello": (False, "/", 40000),
    "tls-stream": (True, "/stream", 64),
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The hello-world app, plus ``/stream``: 10 MB sent in 64 KiB ``more_body`` pieces."""
    if scope["type"] != "http" or scope["path"] != "/stream":
        await hello_app(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % STREAM_SIZE)]})
    for _ in range(STREAM_SIZE // len(_CHUNK)):
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def server_argv(name: str, options: servers.Options, baseline: Path | None) -> list[str]:
    """The command line of ``name`` serving this module's app."""
    if name == "granian":
        argv = [servers.executable("granian"), "--interface", "asgi", "--host", servers.HOST]
        argv += ["--port", str(options.port), "--workers", "1", "--log-level", "warning", "--no-ws"]
        argv += ["--http", "auto"]  # HTTP/1.1 (the readiness probe), h2 by ALPN or prior knowledge
        if options.tls is not None:
            argv += ["--ssl-certificate", options.tls.cert, "--ssl-keyfile", options.tls.key]
        return [*argv, APP]
    if name == "asgigw-base":
        assert baseline is not None
        # -P: the baseline's gateway package, not the one in the current directory.
        command = ["env", f"PYTHONPATH={baseline.resolve()}", sys.executable, "-P", "-m", "gateway"]
        return [*command, *servers.asgigw_argv(options)[1:-1], APP]
    return [*servers.SERVERS[name](options)[:-1], APP]


def start(
    pool: servers.ServerPool, name: str, tls: servers.TLSFiles | None, baseline: Path | None
) -> servers.ServerProcess:
    """Start ``name`` serving this module's app (same flags as the HTTP/1.1 benchmarks)."""
    options = servers.Options(port=servers.free_port(), tls=tls, keep_alive=30)
    argv = server_argv(name, options, baseline)
    if name == "hypercorn":
        # hypercorn closes a connection after keep_alive_max_requests (1000) requests, and
        # h2load counts every request it had not sent yet as failed; lift that limit.
        config = Path(pool._logs.name) / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")
        argv[-1:-1] = ["--config", str(config)]
    server = servers.ServerProcess(name, servers.pinned(argv, pool.server_core), options, pool._logs.name)
    pool.running.append(server)
    server.wait_ready()
    return server


def session_cpu_seconds(pid: int) -> float:
    """CPU time of every process in ``pid``'s session (granian serves from a child process)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # field 6 of the line: the session id
            total += servers.cpu_seconds(int(entry.name))
    return total


def run_h2load(url: str, requests: int, core: int | None, timeout: float) -> dict[str, float]:
    """One bounded h2load run; its req/s, MB/s and failure count."""
    argv = servers.pinned(["h2load", "-t", "1", "-c", "16", "-m", "32", "-n", str(requests), url], core)
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    out = finished.stdout
    speed = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    if finished.returncode != 0 or speed is None or counts is None:
        raise RuntimeError(f"h2load failed ({finished.returncode}): {finished.stderr.strip() or out}")
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[speed.group(5)]
    return {
        "req_per_s": float(speed.group(3)),
        "mb_per_s": float(speed.group(4)) * scale,
        "succeeded": int(counts.group(2)),
        "failed": int(counts.group(3)),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds: for each round, each scenario, each server (order rotated)."""
    server_core, load_core = servers.cores()
    names = ["asgigw", *(["asgigw-base"] if args.baseline else []), "hypercorn"]
    if shutil.which("granian") or (servers.BIN_DIR / "granian").exists():
        names.append("granian")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {s: {n: [] for n in names} for s in args.scenarios}
    with servers.tls_files() as tls, servers.ServerPool(server_core) as pool:
        for round_index in range(args.rounds):
            for scenario in args.scenarios:
                use_tls, path, requests = SCENARIOS[scenario]
                requests = max(1, int(requests * args.scale))
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    server = start(pool, name, tls if use_tls else None, args.baseline)
                    try:
                        url = server.url.rstrip("/") + path
                        run_h2load(url, max(16, requests // 10), load_core, args.timeout)  # warm-up
                        cpu_before = session_cpu_seconds(server.pid)
                        result = run_h2load(url, requests, load_core, args.timeout)
                        cpu = session_cpu_seconds(server.pid) - cpu_before
                        result["cpu_us_per_request"] = cpu * 1e6 / max(1, result["succeeded"])
                    finally:
                        pool.stop(server)
                    runs[scenario][name].append(result)
                    print(f"round {round_index + 1} {scenario:10} {name:11} {result}", file=sys.stderr)
    return runs


def summarise(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, float]]:
    """Medians per scenario and server; asgigw's ratio to each peer, median of the per-round ratios."""
    summary: dict[str, dict[str, float]] = {}
    for scenario, by_server in runs.items():
        row: dict[str, float] = {}
        metric = "mb_per_s" if scenario.endswith("stream") else "req_per_s"
        for name, results in by_server.items():
            row[f"{name}_req_per_s"] = statistics.median(r["req_per_s"] for r in results)
            row[f"{name}_mb_per_s"] = statistics.median(r["mb_per_s"] for r in results)
            row[f"{name}_cpu_us"] = statistics.median(r["cpu_us_per_request"] for r in results)
            row[f"{name}_failed"] = sum(r["failed"] for r in results)
            if name != "asgigw":
                ratios = [a[metric] / b[metric] for a, b in zip(by_server["asgigw"], results, strict=True)]
                row[f"ratio_{name}"] = statistics.median(ratios)
                row[f"ratio_{name}_min"] = min(ratios)
                row[f"ratio_{name}_max"] = max(ratios)
        summary[scenario] = row
    return summary


def header_check_cost(requests: int = 5000) -> tuple[float, float]:
    """Microseconds per request for h2's server state machine fed ``requests`` HEADERS
    frames in-process: with h2's own header validation and normalisation, and with them
    off plus gateway's checks (``request_from_headers``), as the adapter runs it.
    """
    import time

    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    from gateway.protocols.http2_headers import request_from_headers

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    chunks = [client.data_to_send()]
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "localhost")]
    fields += [("user-agent", "h2load"), ("accept", "*/*")]
    for _ in range(requests):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, fields, end_stream=True)
        chunks.append(client.data_to_send())
        client.streams.pop(stream_id)  # keep the client's open-stream count at zero

    def run(h2_checks: bool) -> float:
        server = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=h2_checks,
                normalize_inbound_headers=h2_checks,
            )
        )
        server.initiate_connection()
        server.data_to_send()
        unlimited = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1}
        server.local_settings = h2.settings.Settings(client=False, initial_values=unlimited)
        started = time.perf_counter()
        for chunk in chunks:
            for event in server.receive_data(chunk):
                if isinstance(event, h2.events.RequestReceived):
                    if not h2_checks:
                        request_from_headers(event.stream_id or 0, list(event.headers or ()), connect_protocol=True)
                    server.streams.pop(event.stream_id, None)
        return (time.perf_counter() - started) / requests * 1e6

    run(True)  # warm-up
    return min(run(True) for _ in range(3)), min(run(False) for _ in range(3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ", ".join(SCENARIOS)
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every request count (e.g. 0.2 for a quick run)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before an h2load run is abandoned")
    parser.add_argument("--json", type=Path, help="write raw runs and the summary here")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of asgigw (e.g. the previous commit) to run as asgigw-base"
    )
    parser.add_argument(
        "--header-checks", action="store_true", help="only measure h2's header checks against ours, in-process"
    )
    args = parser.parse_args(argv)
    if args.header_checks:
        with_h2, with_ours = header_check_cost()
        print(f"h2 validation on: {with_h2:.1f} us/request; off + gateway checks: {with_ours:.1f} us/request")
        return 0
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    runs = measure(args)
    summary = summarise(runs)
    names = list(next(iter(runs.values())))
    peers = [n for n in names if n != "asgigw"]
    print("\n| scenario | " + " | ".join(names) + " | " + " | ".join(f"asgigw / {p}" for p in peers) + " |")
    print("|---" * (len(names) + len(peers) + 1) + "|")
    for scenario, row in summary.items():
        unit, metric = ("MB/s", "mb_per_s") if scenario.endswith("stream") else ("req/s", "req_per_s")
        cells = [f"{row[f'{n}_{metric}']:.0f} {unit}, {row[f'{n}_cpu_us']:.0f} µs/req" for n in names]
        ratios = [f"{row[f'ratio_{p}']:.2f}x ({row[f'ratio_{p}_min']:.2f}-{row[f'ratio_{p}_max']:.2f})" for p in peers]
        print(f"| {scenario} | " + " | ".join(cells + ratios) + " |")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
