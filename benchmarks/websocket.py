"""WebSocket benchmark: asgigw against uvicorn (its default websockets), hypercorn and granian on 127.0.0.1.

Run from the repository root::

    python -m benchmarks.websocket --rounds 3 --duration 5 [--tls]

Every server serves ``examples.websocket_echo:app`` (one process, pinned to the first core;
the load generator's processes pin themselves to the second), over plain ws:// or, with
``--tls``, wss:// with a trustme certificate. Scenarios, each bounded in time and count:

- ``echo``: many connections, each sending a small binary message and waiting for its echo
  (one in flight per connection); messages/s = echoed messages / duration, and the
  server's CPU time per message (from /proc/PID/stat), which other load moves far less,
  and its inverse, messages per second of server CPU.
- ``large``: a few connections echoing 1 MiB messages (``--large-size``); messages/s and MiB/s.
- ``memory``: N idle WebSockets held open; the server's RSS growth per connection.

The client (``benchmarks/websocket_client.py``) is a minimal WebSocket client written for
load (constant mask, no compression offered, so no server compresses), run in
``--client-processes`` processes on uvloop when installed, so that it, not the server, is
not what limits the rate; check that the server's CPU time per second of the run is near
1.0 (printed as ``server_cpu_load``) before reading messages/s as the server's capacity.
Rounds rotate the server order so drift on a shared machine hits every server alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, servers, websocket_client

ECHO_APP = "examples.websocket_echo:app"
DEFAULT_SERVERS = ("asgigw", "uvicorn-httptools", "uvicorn-h11", "hypercorn")
BASELINES = ("uvicorn-h11", "uvicorn-httptools", "hypercorn", "granian")


def echo_rate(
    server: servers.ServerProcess, args: argparse.Namespace, connections: int, size: int, load_core: int | None
) -> tuple[float, float, float]:
    """Echoed messages per second over ``--duration`` seconds after ``--warmup``, the
    server's CPU microseconds per message (steadier than the rate when others share the
    core), and its CPU seconds per second (near 1.0: the server, not the client, is the limit)."""
    processes = min(args.client_processes, connections)
    ca_file = server.options.tls.ca if server.options.tls else None
    loads = [
        websocket_client.Load(
            servers.HOST,
            server.options.port,
            connections // processes + (1 if index < connections % processes else 0),
            size,
            ca_file,
            args.client_loop == "uvloop",
        )
        for index in range(processes)
    ]
    count, elapsed, cpu = websocket_client.echo_load(
        loads, load_core, args.warmup, args.duration, lambda: servers.cpu_seconds(server.pid)
    )
    return count / elapsed, cpu * 1e6 / max(count, 1), cpu / elapsed


async def idle_memory(pid: int, port: int, count: int, ca_file: str | None) -> dict[str, float]:
    """RSS before and after opening ``count`` idle WebSockets, and the growth per connection."""
    before = memory.proc_status_kib(pid)["VmRSS"]
    clients = await websocket_client.open_clients(servers.HOST, port, count, b"", [0], ca_file)
    try:
        await asyncio.sleep(memory.SETTLE_SECONDS)
        after = memory.proc_status_kib(pid)["VmRSS"]
    finally:
        websocket_client.close_clients(clients)
        await asyncio.sleep(0.1)
    return {"rss_before_kib": before, "rss_after_kib": after, "per_connection_kib": (after - before) / count}


def start_server(name: str, core: int | None, logs: str, tls: servers.TLSFiles | None) -> servers.ServerProcess:
    """Start ``name`` serving the echo app on a free port and wait until it answers."""
    options = servers.Options(port=servers.free_port(), tls=tls, keep_alive=120)
    argv = servers.SERVERS[name](options)
    argv[-1] = ECHO_APP
    process = servers.ServerProcess(name, servers.pinned(argv, core), options, logs)
    try:
        process.wait_ready()
    except BaseException:
        process.stop()
        raise
    return process


def run_round(
    name: str, args: argparse.Namespace, cores: tuple[int | None, int | None], logs: str, tls: servers.TLSFiles | None
) -> dict[str, float]:
    """Every selected scenario against one fresh server process."""
    server_core, load_core = cores
    server = start_server(name, server_core, logs, tls)
    result: dict[str, float] = {}
    try:
        port = server.options.port
        for scenario, connections, size in (
            ("echo", args.connections, args.message_size),
            ("large", args.large_connections, args.large_size),
        ):
            if scenario in args.scenarios:
                rate, cpu, load = echo_rate(server, args, connections, size, load_core)
                result[f"{scenario}_messages_per_second"], result[f"{scenario}_cpu_us_per_message"] = rate, cpu
                result[f"{scenario}_server_cpu_load"] = load
                # What one core of server CPU echoes: the rate's ceiling when the load
                # generator, not the server, limits msg/s (server_cpu_load well below 1.0).
                result[f"{scenario}_messages_per_cpu_second"] = 1e6 / cpu if cpu else 0.0
        if "memory" in args.scenarios:
            ca_file = tls.ca if tls else None
            sample = asyncio.run(idle_memory(server.pid, port, args.memory_connections, ca_file))
            result.update({f"memory_{key}": value for key, value in sample.items()})
    finally:
        server.stop()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; every loop they drive is bounded by them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.websocket", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--scenarios", default="echo,large,memory", help="comma-separated: echo, large, memory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=100, help="echo scenario connections")
    parser.add_argument("--message-size", type=int, default=32)
    parser.add_argument("--large-connections", type=int, default=4)
    parser.add_argument("--large-size", type=int, default=1024 * 1024, help="bytes per message of the large scenario")
    parser.add_argument("--memory-connections", type=int, default=1000)
    parser.add_argument("--tls", action="store_true", help="wss:// with a trustme certificate instead of ws://")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="load generator processes sharing the load core"
    )
    parser.add_argument(
        "--client-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the load generator (asyncio when uvloop is not installed)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results to FILE")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    args.scenarios = [name for name in args.scenarios.split(",") if name]
    if unknown := [name for name in args.servers if name not in servers.SERVERS]:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    if not (1 <= args.rounds <= 20 and 0.5 <= args.duration <= 60 and 0 <= args.warmup <= 30):
        parser.error("--rounds 1..20, --duration 0.5..60, --warmup 0..30")
    if not (1 <= args.connections <= 5000 and 1 <= args.large_connections <= 64 and args.memory_connections <= 20000):
        parser.error("--connections 1..5000, --large-connections 1..64, --memory-connections up to 20000")
    if not 1 <= args.client_processes <= 16:
        parser.error("--client-processes 1..16")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run interleaved rounds and print medians with ratios against the baselines."""
    args = parse_args(argv)
    cores = servers.cores()
    if cores[1] is not None:
        os.sched_setaffinity(0, {cores[1]})
    memory.raise_open_file_limit(max(args.connections, args.memory_connections) + 256)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.servers}
    with contextlib.ExitStack() as stack:
        tls = stack.enter_context(servers.tls_files()) if args.tls else None
        logs = stack.enter_context(tempfile.TemporaryDirectory(prefix="asgigw-ws-bench-"))
        for round_index in range(args.rounds):
            shift = round_index % len(args.servers)
            for name in args.servers[shift:] + args.servers[:shift]:
                result = run_round(name, args, cores, logs, tls)
                runs[name].append(result)
                figures = ", ".join(f"{key}={value:.1f}" for key, value in result.items())
                print(f"  [round {round_index + 1}/{args.rounds}] {name:<12} {figures}", flush=True)
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]} for name, results in runs.items()
    }
    print("\n| server | " + " | ".join(next(iter(medians.values())).keys()) + " |")
    for name, values in medians.items():
        print(f"| {name} | " + " | ".join(f"{value:.1f}" for value in values.values()) + " |")
    for key in (
        "echo_messages_per_second",
        "large_messages_per_second",
        "echo_messages_per_cpu_second",
        "large_messages_per_cpu_second",
    ):
        ours = medians.get("asgigw", {}).get(key)
        for base in BASELINES:
            theirs = medians.get(base, {}).get(key)
            if ours and theirs:
                print(f"asgigw / {base} {key}: {ours / theirs:.2f}x")
    for key in ("echo_cpu_us_per_message", "large_cpu_us_per_message"):
        ours = medians.get("asgigw", {}).get(key)
        for base in BASELINES:
            theirs = medians.get(base, {}).get(key)
            if ours and theirs:
                print(f"{base} / asgigw {key} (higher = asgigw cheaper): {theirs / ours:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
