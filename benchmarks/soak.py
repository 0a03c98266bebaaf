"""Soak test: asgigw under mixed, partly hostile load for a while, its resources sampled every second.

``python -m benchmarks.soak --duration 600`` starts ``python -m gateway`` over TLS (a trustme
certificate) with ``benchmarks/soak_app.py``, runs the clients of
``benchmarks/soak_clients.py`` against it on loopback (HTTP/1.1 keep-alive and pipelined,
HTTP/2 multiplexed with h2load, WebSocket echo with and without permessage-deflate, 20 MB
uploads and downloads; slowloris heads, stalled bodies, clients that reset or vanish
mid-response, TLS handshakes abandoned half way or never sent) and samples every second:
the server's RSS and open fds (/proc), its asyncio tasks and requests in progress (the app's
``/stats``), established TCP connections to its port (/proc/net/tcp) and the well-behaved
requests per second.

It passes when, after the warm-up, RSS grows by less than ``--max-rss-slope`` KiB per minute
and open fds by less than ``--max-fd-slope`` per minute (least-squares slopes), no
well-behaved request failed, and the server wrote no traceback and no ERROR line. It prints
p50/p99 latencies of the well-behaved clients, writes a PNG plot (``--plot``, default
docs/soak.png) and the raw samples as JSON (``--json``, default under the git-ignored
benchmarks/results/). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import trustme

from benchmarks.soak_clients import HOSTILE, WELL_BEHAVED, Tally, Target

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"asgigw serving https://\S+?:(\d+)")
SERVER_OPTIONS = [
    "--header-timeout", "5", "--body-timeout", "5", "--tls-handshake-timeout", "3",
    "--keep-alive-timeout", "5", "--log-level", "info", "--no-access-log",
]  # fmt: skip


@dataclasses.dataclass
class Sample:
    """One second of the server's life."""

    at: float
    rss_kib: int
    fds: int
    tasks: int
    connections: int
    in_progress: dict[str, int]
    requests_per_second: float


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _established(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def slope_per_minute(samples: list[Sample], field: str) -> float:
    """Least-squares slope of ``field`` over time, per minute."""
    xs = [sample.at for sample in samples]
    ys = [float(getattr(sample, field)) for sample in samples]
    if len(xs) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope * 60


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def problem_blocks(lines: list[str]) -> list[str]:
    """ERROR lines and tracebacks, each with the lines that say what it was (up to 20)."""
    blocks: list[str] = []
    for index, line in enumerate(lines):
        if "[ERROR]" in line or "Traceback" in line:
            start = index - 1 if index and "Traceback" in line else index
            blocks.append("".join(lines[start : index + 20]).rstrip())
    return blocks


def log_kinds(lines: list[str], top: int = 8) -> dict[str, int]:
    """The commonest server log lines, with times, addresses and numbers blanked out."""
    kinds: collections.Counter[str] = collections.Counter()
    for line in lines:
        message = line.split("] ", 1)[-1].strip()
        kinds[re.sub(r"\d+(\.\d+)?", "N", message)[:90]] += 1
    return dict(kinds.most_common(top))


class Soak:
    """One soak run: the server process, the client threads, the sampler."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file, self.cert_file, self.key_file = (
            directory / "ca.pem",
            directory / "cert.pem",
            directory / "key.pem",
        )
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.key_file))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(self.cert_file), append=True)
        argv = [sys.executable, "-m", "gateway", "--port", "0", "--cert", str(self.cert_file)]
        argv += ["--key", str(self.key_file), *SERVER_OPTIONS, "benchmarks.soak_app:app"]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace"))

    def port(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            for line in list(self.lines):
                if match := SERVING.search(line):
                    return int(match.group(1))
            time.sleep(0.05)
        raise RuntimeError("the server did not start:\n" + "".join(self.lines))

    def run(self, duration: float) -> tuple[list[Sample], Tally]:
        target = Target(self.port(), self.ca_file)
        tally = Tally()
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(target, tally, stop), daemon=True, name=name)
            for name, client in {**WELL_BEHAVED, **HOSTILE}.items()
        ]
        for thread in threads:
            thread.start()
        samples: list[Sample] = []
        started = time.monotonic()
        previous = (started, 0)
        with httpx.Client(base_url=target.url, verify=target.context(), timeout=10) as stats_client:
            while time.monotonic() - started < duration and self.process.poll() is None:
                time.sleep(max(0.0, started + len(samples) + 1 - time.monotonic()))
                now, completed = time.monotonic(), tally.completed
                stats: dict[str, Any] = stats_client.get("/stats").json()
                samples.append(
                    Sample(
                        at=now - started,
                        rss_kib=_rss_kib(self.process.pid),
                        fds=len(os.listdir(f"/proc/{self.process.pid}/fd")),
                        tasks=stats["tasks"],
                        connections=_established(target.port),
                        in_progress=stats["in_progress"],
                        requests_per_second=(completed - previous[1]) / (now - previous[0]),
                    )
                )
                previous = (now, completed)
        stop.set()
        for thread in threads:
            thread.join(60)
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return samples, tally


def plot(samples: list[Sample], warmup: float, path: Path, title: str) -> None:
    """Four panels over time: RSS, fds and connections, asyncio tasks, well-behaved req/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    minutes = [sample.at / 60 for sample in samples]
    figure, axes = pyplot.subplots(4, 1, figsize=(9, 10), sharex=True)
    panels = [
        ([sample.rss_kib / 1024 for sample in samples], "RSS (MiB)", None),
        ([sample.fds for sample in samples], "open fds", [sample.connections for sample in samples]),
        ([sample.tasks for sample in samples], "asyncio tasks", None),
        ([sample.requests_per_second for sample in samples], "well-behaved req/s", None),
    ]
    for axis, (values, label, second) in zip(axes, panels, strict=True):
        axis.plot(minutes, values, linewidth=0.8, label=label)
        if second is not None:
            axis.plot(minutes, second, linewidth=0.8, label="TCP connections")
            axis.legend(loc="upper right", fontsize="small")
        axis.axvline(warmup / 60, color="grey", linestyle=":", linewidth=0.8)
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (dotted line: end of warm-up)")
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def collect(duration: float) -> dict[str, Any]:
    """Run the soak; everything measured, before any verdict."""
    with tempfile.TemporaryDirectory(prefix="asgigw-soak-") as directory:
        soak = Soak(Path(directory))
        samples, tally = soak.run(duration)
    latencies = {
        kind: {
            "count": len(values),
            "p50_ms": percentile(values, 0.5) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }
        for kind, values in sorted(tally.latencies.items())
    }
    return {
        "duration": duration, "latencies": latencies, "hostile_cycles": dict(tally.cycles),
        "failures": dict(tally.failures), "log_kinds": log_kinds(soak.lines), "log_lines": len(soak.lines),
        "server_problems": problem_blocks(soak.lines),
        "samples": [dataclasses.asdict(sample) for sample in samples],
    }  # fmt: skip


def judge(report: dict[str, Any], warmup: float, max_rss_slope: float, max_fd_slope: float) -> bool:
    """Add the slopes after ``warmup`` and the verdict to ``report``; print the figures."""
    samples = [Sample(**sample) for sample in report["samples"]]
    steady = [sample for sample in samples if sample.at >= warmup]
    rss_slope, fd_slope = slope_per_minute(steady, "rss_kib"), slope_per_minute(steady, "fds")
    passed = (
        bool(steady)
        and rss_slope < max_rss_slope
        and fd_slope < max_fd_slope
        and not report["failures"]
        and not report["server_problems"]
    )
    report.update(warmup=warmup, rss_slope_kib_per_min=rss_slope, fd_slope_per_min=fd_slope, passed=passed)
    print(f"{len(samples)} samples; warm-up {warmup:.0f} s; server log lines {report['log_lines']}")
    if steady:
        rss = [sample.rss_kib / 1024 for sample in steady]
        print(f"RSS after warm-up {rss[0]:.1f} -> {rss[-1]:.1f} MiB (max {max(rss):.1f}); fds {steady[-1].fds}")
    print(
        f"RSS slope {rss_slope:+.1f} KiB/min (bound {max_rss_slope}); fd slope {fd_slope:+.2f}/min (bound {max_fd_slope})"
    )
    for kind, figures in report["latencies"].items():
        print(
            f"  {kind:18} {figures['count']:8} done   p50 {figures['p50_ms']:8.2f} ms   p99 {figures['p99_ms']:8.2f} ms"
        )
    print(f"hostile cycles: {report['hostile_cycles']}")
    print(f"server log lines by kind: {report['log_kinds']}")
    print(f"well-behaved failures: {report['failures']}")
    for line in report["server_problems"][:20]:
        print(f"server: {line}")
    print("PASS" if passed else "FAIL")
    return passed


def main() -> int:
    """Command line; exit status 0 when the soak passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the slopes (default: 40%%, at most 300)")
    parser.add_argument("--max-rss-slope", type=float, default=100, help="KiB per minute after warm-up (100)")
    parser.add_argument("--max-fd-slope", type=float, default=1, help="fds per minute after warm-up (1)")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    parser.add_argument("--reanalyse", action="store_true", help="judge and plot the --json of an earlier run again")
    arguments = parser.parse_args()
    report = json.loads(arguments.json.read_text()) if arguments.reanalyse else collect(arguments.duration)
    duration = report["duration"]
    warmup = arguments.warmup if arguments.warmup is not None else min(duration * 0.4, 300)
    passed = judge(report, warmup, arguments.max_rss_slope, arguments.max_fd_slope)
    title = (
        f"asgigw soak: {duration / 60:.0f} min, after warm-up RSS {report['rss_slope_kib_per_min']:+.0f} KiB/min, "
        f"fds {report['fd_slope_per_min']:+.2f}/min"
    )
    plot([Sample(**sample) for sample in report["samples"]], warmup, arguments.plot, title)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(report, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
