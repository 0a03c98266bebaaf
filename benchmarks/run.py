"""Compare asgigw with uvicorn (h11+asyncio, httptools+uvloop) and hypercorn on 127.0.0.1.

Run from the repository root::

    python -m benchmarks.run --rounds 3 --duration 8 --json results.json

Each server runs alone (one process, pinned to core 0 when taskset and two cores exist)
while ``wrk`` (pinned to core 1) drives it. Rounds rotate the server order (A B C D, then
B C D A, ...) so slow drift on a shared machine hits every server equally; medians over the
rounds are reported, with ratios against uvicorn-h11 and hypercorn. The memory scenario holds
N idle keep-alive connections and reports the server's RSS growth per connection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python benchmarks/run.py): make the ``benchmarks`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BASELINES = ("uvicorn-h11", "hypercorn")
WRK_PATTERNS = {
    "requests_per_second": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "requests": re.compile(r"(\d+) requests in"),
    "non_2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
}
# What a browser sends on a page load (12 fields besides Host): with --browser-headers wrk
# sends these too, since parsing cost grows with every field line.
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.5",
    "Accept-Encoding: gzip, deflate, br",
    "Connection: keep-alive",
    "Cookie: sessionid=0123456789abcdef0123456789abcdef; csrftoken=fedcba9876543210",
    "Upgrade-Insecure-Requests: 1",
    "Sec-Fetch-Dest: document",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: none",
    "Sec-Fetch-User: ?1",
    "Priority: u=0, i",
)
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; every loop they drive is bounded by them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk load per run (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk load first (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--servers",
        default=",".join(servers.SERVERS),
        help=f"comma-separated subset of {', '.join(servers.SERVERS)} (default all)",
    )
    parser.add_argument("--scenario", choices=["plain", "tls", "memory", "all"], default="all")
    parser.add_argument(
        "--browser-headers", action="store_true", help="wrk sends 12 browser-like header fields besides Host"
    )
    parser.add_argument("--memory-connections", type=int, default=1000, help="idle connections held (default 1000)")
    parser.add_argument(
        "--json", metavar="FILE", help="also write raw results; a bare name goes to benchmarks/results/"
    )
    parser.add_argument("--report", metavar="FILE", help="print the tables of an earlier --json file; run nothing")
    args = parser.parse_args(argv)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in args.servers if name not in servers.SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(servers.SERVERS)}")
    for name in ("duration", "rounds", "connections", "memory_connections"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be between 0 and 60")
    return args


def rotation(names: list[str], round_index: int) -> list[str]:
    """Round 0: A B C D; round 1: B C D A; ... so each server takes each slot in turn."""
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def run_wrk(
    url: str, duration: int, connections: int, core: int | None, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One bounded wrk run (one thread) against ``url``; the figures parsed from its report."""
    extra = [option for header in headers for option in ("-H", header)]
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", *extra, url]
    argv = servers.pinned(argv, core)
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip() or finished.stdout}")
    result: dict[str, Any] = {"requests_per_second": 0.0, "requests": 0, "non_2xx": 0, "socket_errors": 0}
    for key, pattern in WRK_PATTERNS.items():
        match = pattern.search(finished.stdout)
        if match:
            result[key] = float(match.group(1)) if key == "requests_per_second" else int(match.group(1))
    errors = SOCKET_ERRORS.search(finished.stdout)
    if errors:
        result["socket_errors"] = sum(int(value) for value in errors.groups())
    return result


def throughput(pool: servers.ServerPool, args: argparse.Namespace, tls: servers.TLSFiles | None) -> dict[str, Any]:
    """Interleaved wrk rounds over every selected server; raw runs per server."""
    label = "tls" if tls else "plain"
    headers = BROWSER_HEADERS if args.browser_headers else ()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.servers}
    for round_index in range(args.rounds):
        for name in rotation(args.servers, round_index):
            server = pool.start(name, tls)
            try:
                if args.warmup:
                    run_wrk(server.url, args.warmup, args.connections, args.load_core, headers)
                cpu_before = servers.cpu_seconds(server.pid)
                result = run_wrk(server.url, args.duration, args.connections, args.load_core, headers)
                cpu = servers.cpu_seconds(server.pid) - cpu_before
            finally:
                pool.stop(server)
            # Server CPU time per request barely moves when other processes steal the core,
            # unlike req/s: on a shared machine it is the steadier measure of efficiency.
            result["server_cpu_seconds"] = cpu
            result["cpu_us_per_request"] = cpu * 1e6 / result["requests"] if result["requests"] else 0.0
            runs[name].append(result)
            print(
                f"  [{label} round {round_index + 1}/{args.rounds}] {name:<18} "
                f"{result['requests_per_second']:>10.0f} req/s {result['cpu_us_per_request']:>7.1f} CPU us/req  "
                f"errors={result['socket_errors'] + result['non_2xx']}",
                flush=True,
            )
    medians = {name: statistics.median(run["requests_per_second"] for run in runs[name]) for name in runs}
    return {
        "runs": runs,
        "median_rps": medians,
        "ratios": ratios(medians),
        "paired_ratios": paired_ratios(runs),
    }


def ratios(medians: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each server's median divided by each baseline's median (baselines that were run)."""
    table: dict[str, dict[str, float]] = {}
    for name, value in medians.items():
        table[name] = {base: value / medians[base] for base in BASELINES if medians.get(base)}
    return table


def paired_ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Median over rounds of (server / baseline in the same round).

    Runs of one round are minutes apart at most, so on a shared machine whose load swings
    between rounds this is steadier than the ratio of the two overall medians.
    """
    table: dict[str, dict[str, float]] = {}
    for name, server_runs in runs.items():
        table[name] = {}
        for base in BASELINES:
            pairs = zip(server_runs, runs.get(base, []), strict=False)
            values = [
                ours["requests_per_second"] / theirs["requests_per_second"]
                for ours, theirs in pairs
                if theirs["requests_per_second"]
            ]
            if values:
                table[name][base] = statistics.median(values)
    return table


def memory_scenario(pool: servers.ServerPool, args: argparse.Namespace) -> dict[str, Any]:
    """Per server and round: RSS before/after holding N idle keep-alive connections."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in args.servers}
    for round_index in range(args.rounds):
        for name in rotation(args.servers, round_index):
            # A long keep-alive timeout so no server closes the idle connections mid-measurement.
            server = pool.start(name, None, keep_alive=120)
            try:
                sample = memory.measure(server.pid, server.options.port, args.memory_connections)
            finally:
                pool.stop(server)
            samples[name].append({**asdict(sample), "per_connection_kib": sample.per_connection_kib})
            print(
                f"  [memory round {round_index + 1}/{args.rounds}] {name:<18} "
                f"RSS {sample.rss_before_kib} -> {sample.rss_after_kib} KiB, "
                f"{sample.per_connection_kib:.1f} KiB/conn, open {sample.still_open}/{sample.connections}",
                flush=True,
            )
    summary = {
        name: {
            key: statistics.median(sample[key] for sample in samples[name])
            for key in ("rss_before_kib", "rss_after_kib", "hwm_after_kib", "per_connection_kib")
        }
        for name in samples
    }
    return {"samples": samples, "median": summary}


def print_throughput(title: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    """Markdown table of medians and ratios (pasteable into docs/benchmarks.md)."""
    request = "12 browser header fields + Host" if getattr(args, "browser_headers", False) else "GET / with Host only"
    print(f"\n{title}: wrk -t1 -c{args.connections} -d{args.duration}s ({request}), median of {args.rounds} rounds\n")
    print("(ratios: of the medians; in brackets, the median of same-round ratios)\n")
    print("| server | median req/s | min | max | vs uvicorn-h11 | vs hypercorn | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, median in result["median_rps"].items():
        values = [run["requests_per_second"] for run in result["runs"][name]]
        errors = sum(run["socket_errors"] + run["non_2xx"] for run in result["runs"][name])
        ratio, paired = result["ratios"][name], result["paired_ratios"][name]
        cells = [f"{ratio[base]:.2f}x ({paired[base]:.2f}x)" if base in ratio else "-" for base in BASELINES]
        print(f"| {name} | {median:.0f} | {min(values):.0f} | {max(values):.0f} | {cells[0]} | {cells[1]} | {errors} |")
    print_cpu(result)


def print_cpu(result: dict[str, Any]) -> None:
    """Median server CPU time per request, and how many times less than each baseline needs."""
    runs = result["runs"]
    if not all("cpu_us_per_request" in run for name in runs for run in runs[name]):
        return
    cost = {name: statistics.median(run["cpu_us_per_request"] for run in runs[name]) for name in runs}
    print("\n| server | server CPU us/request | efficiency vs uvicorn-h11 | vs hypercorn |")
    print("|---|---:|---:|---:|")
    for name, value in cost.items():
        cells = [f"{cost[base] / value:.2f}x" if base in cost and value else "-" for base in BASELINES]
        print(f"| {name} | {value:.1f} | {cells[0]} | {cells[1]} |")


def print_memory(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Markdown table of RSS figures and per-connection cost, with ratios to the baselines."""
    print(f"\nmemory: {args.memory_connections} idle keep-alive connections, median of {args.rounds} rounds\n")
    print("| server | RSS before KiB | RSS after KiB | VmHWM KiB | KiB per idle conn | vs uvicorn-h11 | vs hypercorn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    medians = result["median"]
    for name, row in medians.items():
        cells = []
        for base in BASELINES:
            reference = medians.get(base, {}).get("per_connection_kib")
            cells.append(f"{row['per_connection_kib'] / reference:.2f}x" if reference else "-")
        print(
            f"| {name} | {row['rss_before_kib']:.0f} | {row['rss_after_kib']:.0f} | {row['hwm_after_kib']:.0f} "
            f"| {row['per_connection_kib']:.1f} | {cells[0]} | {cells[1]} |"
        )


def environment() -> dict[str, Any]:
    """What the figures were measured on, for the JSON record."""
    versions: dict[str, str | None] = {}
    for package in ("asgigw", "uvicorn", "hypercorn", "h11", "h2", "httptools", "uvloop"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def json_path(name: str) -> Path:
    """A bare file name lands in benchmarks/results/ (git-ignored); a path is used as given."""
    path = Path(name)
    if path.parent == Path("."):
        path = RESULTS_DIR / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into SystemExit so the ServerPool's cleanup runs as for Ctrl-C.
    raise SystemExit(128 + signum)


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    """All tables for the scenarios ``report`` holds."""
    for scenario, title in (("plain", "plain HTTP/1.1"), ("tls", "HTTP/1.1 over TLS")):
        if scenario in report:
            result = report[scenario]
            result.setdefault("paired_ratios", paired_ratios(result["runs"]))
            print_throughput(title, result, args)
    if "memory" in report:
        print_memory(report["memory"], args)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and print (and optionally save) the results."""
    args = parse_args(argv)
    if args.report:
        saved = json.loads(json_path(args.report).read_text())
        print_report(saved, argparse.Namespace(**saved["arguments"]))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    server_core, args.load_core = servers.cores()
    report: dict[str, Any] = {"environment": environment(), "arguments": {**vars(args), "server_core": server_core}}
    if args.load_core is not None:
        # This process is the memory scenario's client: keep it off the server's core too.
        os.sched_setaffinity(0, {args.load_core})
    memory.raise_open_file_limit(args.memory_connections + 256)
    print(f"servers: {', '.join(args.servers)}; server core {server_core}, load core {args.load_core}", flush=True)
    with servers.ServerPool(server_core) as pool:
        if args.scenario in ("plain", "all"):
            report["plain"] = throughput(pool, args, None)
        if args.scenario in ("tls", "all"):
            with servers.tls_files() as files:
                report["tls"] = throughput(pool, args, files)
        if args.scenario in ("memory", "all"):
            report["memory"] = memory_scenario(pool, args)
    print_report(report, args)
    if args.json:
        path = json_path(args.json)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nraw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
