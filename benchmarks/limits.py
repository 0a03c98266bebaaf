"""What the edge limits cost: asgigw with each limit on against asgigw without, same run.

``python -m benchmarks.limits [--rounds 3] [--duration 5]`` starts one plain-HTTP asgigw
process per variant (pinned to one core, wrk to the other, as ``benchmarks.run`` does) and
measures two loads in interleaved rounds:

- keep-alive: ``wrk -c64``, many requests per connection; what ``--limit-concurrency`` and
  ``--rate-limit`` add per request (limits set high enough never to refuse);
- new connection per request: wrk with ``Connection: close``; what ``--max-connections``
  (its own accept loop instead of asyncio's server) adds per connection.

Reported: median req/s, ratio to the variant without limits, and server CPU µs per request.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from typing import Any

from benchmarks import servers
from benchmarks.run import run_wrk

VARIANTS: dict[str, list[str]] = {
    "no limits": [],
    "--limit-concurrency --rate-limit": ["--limit-concurrency", "100000", "--rate-limit", "100000000/s"],
    "--max-connections": ["--max-connections", "100000"],
}
LOADS: dict[str, tuple[str, ...]] = {"keep-alive": (), "connection per request": ("Connection: close",)}


def start(variant: list[str], core: int | None) -> tuple[subprocess.Popen[bytes], servers.ServerProcess]:
    options = servers.Options(port=servers.free_port(), tls=None, keep_alive=5)
    argv = servers.asgigw_argv(options)
    argv = [*argv[:-1], *variant, argv[-1]]
    pool_dir = servers.tempfile.mkdtemp(prefix="asgigw-bench-limits-")
    server = servers.ServerProcess("asgigw", servers.pinned(argv, core), options, pool_dir)
    server.wait_ready()
    return server.process, server


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print one table per load."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk load per run (default 5)")
    args = parser.parse_args(argv)
    server_core, load_core = servers.cores()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(args.rounds):
        names = list(VARIANTS)
        names = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in names:
            _, server = start(VARIANTS[name], server_core)
            try:
                for load, headers in LOADS.items():
                    run_wrk(server.url, 1, 64, load_core, headers)  # warm-up, not measured
                    cpu_before = servers.cpu_seconds(server.pid)
                    result: dict[str, Any] = run_wrk(server.url, args.duration, 64, load_core, headers)
                    cpu = servers.cpu_seconds(server.pid) - cpu_before
                    requests = max(1, int(result["requests"]))
                    results.setdefault((load, name), []).append((result["requests_per_second"], cpu / requests * 1e6))
            finally:
                server.stop()
    for load in LOADS:
        base = statistics.median(rate for rate, _ in results[(load, "no limits")])
        print(f"\n{load} (median of {args.rounds} rounds x {args.duration} s)")
        print("| variant | req/s | vs no limits | server CPU µs/request |\n|---|---:|---:|---:|")
        for name in VARIANTS:
            runs = results[(load, name)]
            rate = statistics.median(value for value, _ in runs)
            cpu = statistics.median(value for _, value in runs)
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
