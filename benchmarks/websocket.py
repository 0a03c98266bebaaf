"""WebSocket benchmark: asgigw against uvicorn (its default websockets) and hypercorn on 127.0.0.1.

Run from the repository root::

    python -m benchmarks.websocket --rounds 3 --duration 5

Every server serves ``examples.websocket_echo:app`` (one process, pinned to the first core;
this load generator pins itself to the second). Scenarios, each bounded in time and count:

- ``echo``: many connections, each sending a small binary message and waiting for its echo
  (one in flight per connection); messages/s = echoed messages / duration, and the
  server's CPU time per message (from /proc/PID/stat), which other load moves far less.
- ``large``: a few connections echoing 1 MiB messages (``--large-size``); messages/s and MiB/s.
- ``memory``: N idle WebSockets held open; the server's RSS growth per connection.

The client is a minimal asyncio WebSocket client written for load (constant mask, no
compression offered, so no server compresses), so it costs little next to the servers.
Rounds rotate the server order so drift on a shared machine hits every server alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, servers

ECHO_APP = "examples.websocket_echo:app"
DEFAULT_SERVERS = ("asgigw", "uvicorn-h11", "hypercorn")
BASELINES = ("uvicorn-h11", "uvicorn-httptools", "hypercorn", "granian")
_MASK = b"\x37\xfa\x21\x3d"


def client_frame(payload: bytes) -> bytes:
    """One masked binary frame (RFC 6455 §5.2); the benchmark reuses it for every send."""
    length = len(payload)
    if length < 126:
        header = bytes([0x82, 0x80 | length])
    elif length < 65536:
        header = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = (_MASK * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")
    return header + _MASK + masked


class EchoClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then send a frame per echoed message."""

    def __init__(self, frame: bytes, host: str, counter: list[int]) -> None:
        self.frame = frame
        self.host = host
        self.counter = counter
        self.buffer = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.running = True
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (self.host.encode(), key)
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(bytes(self.buffer[:60]).decode(errors="replace")))
                return
            del self.buffer[: end + 4]
            self.open.set_result(None)
        self._parse_frames()

    def _parse_frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            first = buffer[0]
            del buffer[: offset + length]
            # Count finished data messages; control frames (pings) are not echoes.
            if first & 0x80 and (first & 0x0F) < 0x8:
                self.counter[0] += 1
                if self.running and self.transport is not None:
                    self.transport.write(self.frame)

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))


async def open_clients(port: int, count: int, frame: bytes, counter: list[int]) -> list[EchoClient]:
    """Open ``count`` WebSockets (bounded by a 20 s timeout)."""
    loop = asyncio.get_running_loop()
    clients: list[EchoClient] = []
    for _ in range(count):
        _, client = await asyncio.wait_for(
            loop.create_connection(lambda: EchoClient(frame, servers.HOST, counter), servers.HOST, port), 10
        )
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(client.open for client in clients)), 20)
    return clients


def close_clients(clients: list[EchoClient]) -> None:
    """Drop the connections (the servers see a client gone; fine for a benchmark)."""
    for client in clients:
        client.running = False
        if client.transport is not None:
            client.transport.close()


async def echo_rate(
    pid: int, port: int, connections: int, size: int, duration: float, warmup: float
) -> tuple[float, float]:
    """Echoed messages per second over ``duration`` seconds after ``warmup``, and the
    server's CPU microseconds per message (steadier than the rate when others share the core)."""
    counter = [0]
    clients = await open_clients(port, connections, client_frame(b"x" * size), counter)
    try:
        for client in clients:
            client.start()
        await asyncio.sleep(warmup)
        start_count, started, cpu = counter[0], time.perf_counter(), servers.cpu_seconds(pid)
        await asyncio.sleep(duration)
        cpu = servers.cpu_seconds(pid) - cpu
        count = counter[0] - start_count
        return count / (time.perf_counter() - started), cpu * 1e6 / max(count, 1)
    finally:
        close_clients(clients)
        await asyncio.sleep(0.1)


async def idle_memory(pid: int, port: int, count: int) -> dict[str, float]:
    """RSS before and after opening ``count`` idle WebSockets, and the growth per connection."""
    before = memory.proc_status_kib(pid)["VmRSS"]
    clients = await open_clients(port, count, b"", [0])
    try:
        await asyncio.sleep(memory.SETTLE_SECONDS)
        after = memory.proc_status_kib(pid)["VmRSS"]
    finally:
        close_clients(clients)
        await asyncio.sleep(0.1)
    return {"rss_before_kib": before, "rss_after_kib": after, "per_connection_kib": (after - before) / count}


def start_server(name: str, core: int | None, logs: str) -> servers.ServerProcess:
    """Start ``name`` serving the echo app on a free port (plain HTTP) and wait until it answers."""
    options = servers.Options(port=servers.free_port(), tls=None, keep_alive=120)
    argv = servers.SERVERS[name](options)
    argv[-1] = ECHO_APP
    process = servers.ServerProcess(name, servers.pinned(argv, core), options, logs)
    try:
        process.wait_ready()
    except BaseException:
        process.stop()
        raise
    return process


def run_round(name: str, args: argparse.Namespace, core: int | None, logs: str) -> dict[str, float]:
    """Every selected scenario against one fresh server process."""
    server = start_server(name, core, logs)
    result: dict[str, float] = {}
    try:
        port = server.options.port
        if "echo" in args.scenarios:
            rate, cpu = asyncio.run(
                echo_rate(server.pid, port, args.connections, args.message_size, args.duration, args.warmup)
            )
            result["echo_messages_per_second"], result["echo_cpu_us_per_message"] = rate, cpu
        if "large" in args.scenarios:
            rate, cpu = asyncio.run(
                echo_rate(server.pid, port, args.large_connections, args.large_size, args.duration, args.warmup)
            )
            result["large_messages_per_second"], result["large_cpu_us_per_message"] = rate, cpu
        if "memory" in args.scenarios:
            sample = asyncio.run(idle_memory(server.pid, port, args.memory_connections))
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
    return args


def main(argv: list[str] | None = None) -> int:
    """Run interleaved rounds and print medians with ratios against the baselines."""
    args = parse_args(argv)
    server_core, load_core = servers.cores()
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    memory.raise_open_file_limit(max(args.connections, args.memory_connections) + 256)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.servers}
    with tempfile.TemporaryDirectory(prefix="asgigw-ws-bench-") as logs:
        for round_index in range(args.rounds):
            shift = round_index % len(args.servers)
            for name in args.servers[shift:] + args.servers[:shift]:
                result = run_round(name, args, server_core, logs)
                runs[name].append(result)
                figures = ", ".join(f"{key}={value:.1f}" for key, value in result.items())
                print(f"  [round {round_index + 1}/{args.rounds}] {name:<12} {figures}", flush=True)
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]} for name, results in runs.items()
    }
    print("\n| server | " + " | ".join(next(iter(medians.values())).keys()) + " |")
    for name, values in medians.items():
        print(f"| {name} | " + " | ".join(f"{value:.1f}" for value in values.values()) + " |")
    for key in ("echo_messages_per_second", "large_messages_per_second"):
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
