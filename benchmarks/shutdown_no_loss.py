"""Nothing lost at shutdown and restart: real clients keep a real asgigw busy, then it is stopped.

HTTP/1.1 (httpx), HTTP/2 (httpx, curl and nghttp, prior knowledge on the plain port) and
WebSocket (websockets) clients send requests to ``benchmarks/shutdown_app.py`` without pause.
With ``--workers 2`` one worker is killed with SIGKILL and the supervisor starts a new one;
then the server gets SIGTERM. The app notes every request it receives, so afterwards each
request is exactly one of:

- completed: the whole response arrived, every byte as expected;
- refused: it failed and never reached the app (connection refused, closed before the
  request was read, REFUSED_STREAM): a clean refusal, the client may retry;
- lost: it reached the app but its response did not arrive whole. This must be 0;
- killed: it reached the worker that was killed with SIGKILL (lost by definition).

It passes when nothing is lost, connecting after SIGTERM is refused while in-flight
responses are still being finished, every WebSocket ends with close 1001 from the server,
and the server exits with 0. ``python -m benchmarks.shutdown_no_loss --workers 2`` prints a
table per client; ``tests/test_shutdown_no_loss.py`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import websockets

from benchmarks.shutdown_app import expected_body

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"asgigw serving http://127\.0\.0\.1:(\d+)")
WORKER_READY = re.compile(r"\[worker (\d+)\] worker ready")
# Each request: the app waits this long, then streams its body over as long again.
WORK_MS = 150
BODY_SIZE = 64 * 1024
# Pause between two requests of one client loop, so the load stays light on a shared machine.
PAUSE = 0.02


@dataclasses.dataclass
class ClientRecord:
    """What one client did: per request id, whether it completed and why not."""

    name: str
    outcomes: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> "ok" or the failure
    close_codes: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # WebSocket: (when, code)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def note(self, request_id: str, outcome: str) -> None:
        with self.lock:
            self.outcomes[request_id] = outcome


@dataclasses.dataclass
class ClientCounts:
    """The per-client figures of one run."""

    sent: int = 0
    completed: int = 0
    refused: int = 0
    lost: int = 0
    killed: int = 0
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    # WebSocket: close codes of the connections open at SIGTERM, and of those the killed
    # worker took with it (1006, no close frame).
    close_codes: dict[int, int] = dataclasses.field(default_factory=dict)
    close_codes_before_stop: dict[int, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Report:
    """The result of one run."""

    workers: int
    exit_code: int | None
    refused_after_stop: bool
    clients: dict[str, ClientCounts]
    server_errors: list[str]

    @property
    def passed(self) -> bool:
        """Nothing lost, clean refusals, 1001 for every WebSocket, exit code 0, no ERROR line."""
        websocket = self.clients.get("websocket")
        codes_ok = websocket is None or set(websocket.close_codes) <= {1001}
        lost = sum(counts.lost for counts in self.clients.values())
        return self.exit_code == 0 and self.refused_after_stop and lost == 0 and codes_ok and not self.server_errors


def _url(port: int, request_id: str) -> str:
    return f"http://127.0.0.1:{port}/work?id={request_id}&ms={WORK_MS}&size={BODY_SIZE}"


def _failure(exc: BaseException) -> str:
    return type(exc).__name__


def _httpx_loop(record: ClientRecord, port: int, stop: threading.Event, worker: int, http2: bool) -> None:
    with httpx.Client(http1=not http2, http2=http2, timeout=30) as client:
        number = 0
        while not stop.is_set():
            number += 1
            request_id = f"{record.name}-{worker}-{number}"
            try:
                response = client.get(_url(port, request_id))
                ok = response.status_code == 200 and response.content == expected_body(request_id, BODY_SIZE)
                record.note(request_id, "ok" if ok else f"status {response.status_code}/{len(response.content)}")
            except httpx.HTTPError as exc:
                record.note(request_id, _failure(exc))
            stop.wait(PAUSE)


def _command_loop(record: ClientRecord, port: int, stop: threading.Event, command: Callable[[str], list[str]]) -> None:
    number = 0
    while not stop.is_set():
        number += 1
        request_id = f"{record.name}-{number}"
        try:
            done = subprocess.run(command(_url(port, request_id)), capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            record.note(request_id, "timeout")
            continue
        ok = done.returncode == 0 and done.stdout == expected_body(request_id, BODY_SIZE)
        record.note(request_id, "ok" if ok else f"exit {done.returncode}/{len(done.stdout)}")
        stop.wait(PAUSE)


async def _websocket_connection(record: ClientRecord, port: int, stop: threading.Event, worker: int) -> None:
    number = 0
    while not stop.is_set():
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=10) as ws:
                while not stop.is_set():
                    number += 1
                    message_id = f"{record.name}-{worker}-{number}"
                    await ws.send(message_id)
                    try:
                        echoed = await ws.recv()
                    except websockets.ConnectionClosed:
                        # The server's close crossed this message: RFC 6455 §5.5.1 lets it
                        # discard what arrives after its close, so it never reached the app.
                        record.note(message_id, "crossed the close")
                        raise
                    record.note(message_id, "ok" if echoed == message_id else "wrong echo")
                    await asyncio.sleep(PAUSE * 5)
        except websockets.ConnectionClosed as exc:
            received = exc.rcvd
            record.close_codes.append((time.monotonic(), received.code if received is not None else 1006))
        except (OSError, websockets.InvalidHandshake, TimeoutError):
            await asyncio.sleep(PAUSE * 5)  # refused after the stop: try again until told to stop


def _websocket_loop(record: ClientRecord, port: int, stop: threading.Event, connections: int) -> None:
    async def main() -> None:
        await asyncio.gather(*(_websocket_connection(record, port, stop, index) for index in range(connections)))

    asyncio.run(main())


def _curl(url: str) -> list[str]:
    return ["curl", "-sS", "--fail", "--http2-prior-knowledge", "--max-time", "30", url]


def _nghttp(url: str) -> list[str]:
    return ["nghttp", "--no-dep", "--timeout=30", url]


def start_clients(port: int, stop: threading.Event) -> tuple[dict[str, ClientRecord], list[threading.Thread]]:
    """Start every client kind in its own threads; they run until ``stop`` is set."""
    records = {
        name: ClientRecord(name)
        for name in ("http1-httpx", "http2-httpx", "http2-curl", "http2-nghttp", "websocket")
        if not name.endswith(("-curl", "-nghttp")) or shutil.which(name.rsplit("-", 1)[1])
    }
    jobs: list[tuple[Callable[..., None], tuple[object, ...]]] = []
    for worker in range(3):
        jobs.append((_httpx_loop, (records["http1-httpx"], port, stop, worker, False)))
        jobs.append((_httpx_loop, (records["http2-httpx"], port, stop, worker, True)))
    if "http2-curl" in records:
        jobs.append((_command_loop, (records["http2-curl"], port, stop, _curl)))
    if "http2-nghttp" in records:
        jobs.append((_command_loop, (records["http2-nghttp"], port, stop, _nghttp)))
    jobs.append((_websocket_loop, (records["websocket"], port, stop, 3)))
    threads = [threading.Thread(target=target, args=args, daemon=True) for target, args in jobs]
    for thread in threads:
        thread.start()
    return records, threads


class Server:
    """``python -m gateway`` serving the shutdown app, its stderr collected by a thread."""

    def __init__(self, workers: int, accept_log: Path, graceful_timeout: float) -> None:
        argv = [sys.executable, "-m", "gateway", "--no-tls", "--port", "0"]
        argv += ["--graceful-timeout", str(graceful_timeout), "--workers", str(workers), "benchmarks.shutdown_app:app"]
        environment = {**os.environ, "ASGIGW_ACCEPT_LOG": str(accept_log)}
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace"))

    def wait_for(self, pattern: re.Pattern[str], count: int = 1, timeout: float = 20.0) -> list[re.Match[str]]:
        """The first ``count`` matches in stderr, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [match for line in list(self.lines) if (match := pattern.search(line))]
            if len(matches) >= count:
                return matches[:count]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no {count} stderr lines matching {pattern.pattern!r}:\n{''.join(self.lines)}")

    def finish(self, timeout: float) -> int | None:
        """Wait for the exit; kill after ``timeout`` (then the exit code is None)."""
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            code = None
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


def refused_soon(port: int, within: float) -> bool:
    """True once a new connection to ``port`` is refused."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


def classify(
    records: dict[str, ClientRecord], accepted: dict[str, int], killed_pid: int | None, stopped_at: float
) -> dict[str, ClientCounts]:
    """Each request completed, refused (never reached the app), lost, or killed with its worker."""
    result: dict[str, ClientCounts] = {}
    for name, record in records.items():
        counts = ClientCounts(sent=len(record.outcomes))
        failures: collections.Counter[str] = collections.Counter()
        for request_id, outcome in record.outcomes.items():
            if outcome == "ok":
                counts.completed += 1
                continue
            failures[outcome] += 1
            pid = accepted.get(request_id)
            if pid is None:
                counts.refused += 1
            elif pid == killed_pid:
                counts.killed += 1
            else:
                counts.lost += 1
        counts.failures = dict(failures)
        counts.close_codes = dict(collections.Counter(code for when, code in record.close_codes if when >= stopped_at))
        counts.close_codes_before_stop = dict(
            collections.Counter(code for when, code in record.close_codes if when < stopped_at)
        )
        result[name] = counts
    return result


def run(workers: int = 1, warmup: float = 2.0, graceful_timeout: float = 15.0) -> Report:
    """One run: load, (kill -9 a worker and wait for its replacement,) SIGTERM, count."""
    with tempfile.TemporaryDirectory(prefix="asgigw-shutdown-") as directory:
        accept_log = Path(directory) / "accepted.log"
        server = Server(workers, accept_log, graceful_timeout)
        stop = threading.Event()
        threads: list[threading.Thread] = []
        records: dict[str, ClientRecord] = {}
        killed_pid: int | None = None
        stopped_at = float("inf")
        try:
            port = int(server.wait_for(SERVING)[0].group(1))
            if workers > 1:
                server.wait_for(WORKER_READY, workers)
            records, threads = start_clients(port, stop)
            time.sleep(warmup)
            if workers > 1:
                killed_pid = int(server.wait_for(WORKER_READY)[0].group(1))
                os.kill(killed_pid, signal.SIGKILL)
                server.wait_for(re.compile(r"replaced the one in slot"))
                time.sleep(warmup)
            stopped_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            refused = refused_soon(port, within=5.0)
            exit_code = server.finish(graceful_timeout + 10)
        finally:
            stop.set()
            for thread in threads:
                thread.join(40)
            if server.process.poll() is None:
                server.process.kill()
                server.finish(5)
        accepted: dict[str, int] = {}
        if accept_log.exists():
            for line in accept_log.read_text().splitlines():
                pid, request_id = line.split(" ", 1)
                accepted[request_id] = int(pid)
    errors = [line.rstrip() for line in server.lines if "[ERROR]" in line or "Traceback" in line]
    return Report(workers, exit_code, refused, classify(records, accepted, killed_pid, stopped_at), errors)


def print_report(report: Report) -> None:
    """A table per client, then the verdict."""
    print(f"workers={report.workers} exit code={report.exit_code} refused after SIGTERM={report.refused_after_stop}")
    print(
        f"{'client':14} {'sent':>6} {'completed':>9} {'refused':>7} {'lost':>5} {'killed':>6}  failures / close codes"
    )
    for name, counts in report.clients.items():
        extra = json.dumps(counts.failures)
        if name == "websocket":
            extra += f" close at stop {counts.close_codes}, before {counts.close_codes_before_stop}"
        print(
            f"{name:14} {counts.sent:6} {counts.completed:9} {counts.refused:7} {counts.lost:5} {counts.killed:6}  {extra}"
        )
    for line in report.server_errors:
        print(f"server: {line}")
    print("PASS" if report.passed else "FAIL")


def main() -> int:
    """Command line: ``python -m benchmarks.shutdown_no_loss [--workers N] [--warmup S] [--json FILE]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="1 (SIGTERM only) or more (kill -9 one first)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each step")
    parser.add_argument("--json", type=Path, help="also write the report here")
    arguments = parser.parse_args()
    report = run(arguments.workers, arguments.warmup)
    print_report(report)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(dataclasses.asdict(report), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
