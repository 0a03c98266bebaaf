"""Hostile clients, measured: each attack class against a fresh asgigw, with a bystander timed.

``python -m benchmarks.attacks`` starts ``python -m gateway`` with ``benchmarks/soak_app.py``
once per attack, times a well-behaved HTTP/1.1 keep-alive client (the bystander, on its own
connection) for a second alone and then during ``--seconds`` of the attack, samples the
server's RSS every 0.1 s, and counts how the server answered the attacker (status codes,
GOAWAY codes, close codes, connections cut). It prints one Markdown row per attack, the
table of docs/security.md, and writes JSON (``--json``, default under the git-ignored
benchmarks/results/). Linux only (/proc). The attacks themselves live in
``benchmarks/attack_clients.py``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trustme

from benchmarks.attack_clients import ATTACKS, Attack, Observed, prepare
from benchmarks.soak import ROOT, percentile
from benchmarks.soak_clients import _read_responses

BASE_OPTIONS = ["--port", "0", "--no-access-log", "--log-level", "info"]


@dataclasses.dataclass
class Measurement:
    """One attack's figures."""

    name: str
    limit: str
    options: list[str]
    rss_before_mib: float
    rss_max_mib: float
    alone_p50_ms: float
    alone_p99_ms: float
    during_p50_ms: float
    during_p99_ms: float
    bystander_requests: int
    bystander_failures: int
    observed: dict[str, int]
    server_problems: list[str]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bystander:
    """HTTP/1.1 keep-alive GET /hello every 20 ms on its own connection, timed."""

    def __init__(self, port: int, context: ssl.SSLContext | None) -> None:
        self._port, self._context = port, context
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=10)
        return self._context.wrap_socket(sock, server_hostname="localhost") if self._context else sock

    def _run(self) -> None:
        sock = self._connect()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                sock.sendall(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n")
                _read_responses(sock, 1)  # type: ignore[arg-type]
                self.latencies.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1
                sock.close()
                self._stop.wait(0.1)
                sock = self._connect()
            self._stop.wait(0.02)
        sock.close()

    def take(self) -> list[float]:
        """The latencies so far, and start a new list."""
        taken, self.latencies = self.latencies, []
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def measure(attack: Attack, seconds: float, certificate: tuple[Path, Path, Path]) -> Measurement:
    """Start a server for ``attack``, time the bystander alone then during the attack."""
    ca_file, cert_file, key_file = certificate
    tls = ["--cert", str(cert_file), "--key", str(key_file)] if attack.tls else ["--no-tls"]
    argv = [sys.executable, "-m", "gateway", *BASE_OPTIONS, *tls, *attack.options, "benchmarks.soak_app:app"]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(raw.decode(errors="replace") for raw in process.stderr or ()), daemon=True
    )
    reader.start()
    try:
        port = _wait_for_port(lines, process)
        context = ssl.create_default_context(cafile=str(ca_file)) if attack.tls else None
        bystander = Bystander(port, context)
        time.sleep(1.0)
        alone = bystander.take()
        failures_before = bystander.failures
        rss_before = _rss_mib(process.pid)
        observed: Observed = collections.Counter()
        stop = threading.Event()
        threads = [
            threading.Thread(target=attack.run, args=(port, context, stop, observed), daemon=True)
            for _ in range(attack.threads)
        ]
        for thread in threads:
            thread.start()
        rss_max = rss_before
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            rss_max = max(rss_max, _rss_mib(process.pid))
            time.sleep(0.1)
        during = bystander.take()
        failures = bystander.failures - failures_before
        stop.set()
        for thread in threads:
            thread.join(15)
        bystander.stop()
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        reader.join(5)
        if process.stderr is not None:
            process.stderr.close()
    problems = [line.rstrip() for line in lines if "Traceback" in line or "[ERROR]" in line]
    return Measurement(
        name=attack.name,
        limit=attack.limit,
        options=attack.options,
        rss_before_mib=rss_before,
        rss_max_mib=rss_max,
        alone_p50_ms=percentile(alone, 0.5) * 1000,
        alone_p99_ms=percentile(alone, 0.99) * 1000,
        during_p50_ms=percentile(during, 0.5) * 1000,
        during_p99_ms=percentile(during, 0.99) * 1000,
        bystander_requests=len(during),
        bystander_failures=failures,
        observed=dict(observed.most_common(4)),
        server_problems=problems[:5],
    )


def _wait_for_port(lines: list[str], process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        for line in list(lines):
            if "asgigw serving" in line:
                return int(line.split("://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        time.sleep(0.05)
    raise RuntimeError("the server did not start:\n" + "".join(lines))


def markdown(results: list[Measurement]) -> str:
    """The table of docs/security.md."""
    rows = [
        "| attack | what stops it | server answer seen | RSS growth | bystander p50 / p99 alone | during the attack |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        answers = ", ".join(f"{kind} x{count}" for kind, count in result.observed.items()) or "-"
        failed = f", {result.bystander_failures} failed" if result.bystander_failures else ""
        rows.append(
            f"| {result.name} | {result.limit} | {answers} | {result.rss_max_mib - result.rss_before_mib:+.1f} MiB "
            f"| {result.alone_p50_ms:.1f} / {result.alone_p99_ms:.1f} ms "
            f"| {result.during_p50_ms:.1f} / {result.during_p99_ms:.1f} ms ({result.bystander_requests} requests{failed}) |"
        )
    return "\n".join(rows)


def main() -> int:
    """Command line; exit status 1 if a bystander request failed or the server logged an error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="attack duration per class (6)")
    parser.add_argument("--only", help="comma-separated attack names (default: all)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "attacks.json")
    arguments = parser.parse_args()
    chosen = [attack for attack in ATTACKS if not arguments.only or attack.name in arguments.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="asgigw-attacks-") as directory:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        paths = (Path(directory) / "ca.pem", Path(directory) / "cert.pem", Path(directory) / "key.pem")
        ca.cert_pem.write_to_path(str(paths[0]))
        cert.cert_chain_pems[0].write_to_path(str(paths[1]))
        cert.private_key_pem.write_to_path(str(paths[2]))
        prepare()
        for attack in chosen:
            result = measure(attack, arguments.seconds, paths)
            print(f"{attack.name}: {result.observed} bystander failures {result.bystander_failures}", flush=True)
            results.append(result)
    print(markdown(results))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps([dataclasses.asdict(result) for result in results], indent=1))
    bad = [result.name for result in results if result.bystander_failures or result.server_problems]
    for name in bad:
        print(f"FAIL: {name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
