"""The servers under test: how to start each one on 127.0.0.1, wait for it, and stop it.

Every server runs one process serving ``benchmarks.app:app`` from the repository root, so
req/s and RSS compare like with like. Child processes start in their own session so that
stopping one kills its whole process group and nothing else.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.app:app"
HOST = "127.0.0.1"
BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class TLSFiles:
    """A trustme certificate for 127.0.0.1/localhost written to a temporary folder."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class Options:
    """What one server start needs: port, TLS files (None = plain HTTP), idle keep-alive seconds."""

    port: int
    tls: TLSFiles | None
    keep_alive: int


def executable(name: str) -> str:
    """The console script ``name`` from this interpreter's environment, else from $PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"benchmarks: {name} is not installed (pip install -e '.[bench]')")
    return found


def asgigw_argv(options: Options, *accelerators: str) -> list[str]:
    """The one place the asgigw command line is built (plain HTTP needs ``--no-tls``).

    Without ``accelerators`` asgigw runs with ``--loop auto --http1-parser auto``: uvloop
    and httptools when the ``fast`` extra is installed.
    """
    argv = [executable("asgigw"), "--no-access-log", "--log-level", "warning", *accelerators]
    argv += ["--host", HOST, "--port", str(options.port), "--keep-alive-timeout", str(options.keep_alive)]
    if options.tls is None:
        argv.append("--no-tls")
    else:
        argv += ["--cert", options.tls.cert, "--key", options.tls.key]
    return [*argv, APP]


def asgigw_pure_argv(options: Options) -> list[str]:
    """asgigw without the fast extra's backends: h11 on the stock asyncio loop."""
    return asgigw_argv(options, "--loop", "asyncio", "--http1-parser", "h11")


def granian_argv(options: Options) -> list[str]:
    """granian (Rust HTTP core) with one worker: the reference ceiling, reported without a target."""
    argv = [executable("granian"), "--interface", "asgi", "--workers", "1", "--log-level", "warning"]
    argv += ["--host", HOST, "--port", str(options.port)]
    if options.tls is not None:
        argv += ["--ssl-certificate", options.tls.cert, "--ssl-keyfile", options.tls.key]
    return [*argv, APP]


def _uvicorn_argv(options: Options, http: str, loop: str) -> list[str]:
    argv = [executable("uvicorn"), "--http", http, "--loop", loop, "--no-access-log", "--log-level", "warning"]
    argv += ["--host", HOST, "--port", str(options.port), "--timeout-keep-alive", str(options.keep_alive)]
    if options.tls is not None:
        argv += ["--ssl-certfile", options.tls.cert, "--ssl-keyfile", options.tls.key]
    return [*argv, APP]


def uvicorn_h11_argv(options: Options) -> list[str]:
    """uvicorn in its pure-Python mode: h11 parser on the stock asyncio loop."""
    return _uvicorn_argv(options, "h11", "asyncio")


def uvicorn_httptools_argv(options: Options) -> list[str]:
    """uvicorn in its accelerated mode: httptools parser on uvloop."""
    return _uvicorn_argv(options, "httptools", "uvloop")


def hypercorn_argv(options: Options) -> list[str]:
    """hypercorn with ``-w 0``: serve in this process rather than in one spawned worker."""
    argv = [executable("hypercorn"), "-w", "0", "-b", f"{HOST}:{options.port}", "--log-level", "warning"]
    argv += ["--keep-alive", str(options.keep_alive)]
    if options.tls is not None:
        argv += ["--certfile", options.tls.cert, "--keyfile", options.tls.key]
    return [*argv, APP]


SERVERS: dict[str, Callable[[Options], list[str]]] = {
    "asgigw": asgigw_argv,
    "asgigw-pure": asgigw_pure_argv,
    "uvicorn-h11": uvicorn_h11_argv,
    "uvicorn-httptools": uvicorn_httptools_argv,
    "hypercorn": hypercorn_argv,
    "granian": granian_argv,
}


def pinned(argv: list[str], core: int | None) -> list[str]:
    """Prefix ``taskset -c core`` when pinning is possible, so server and load generator do not share a core."""
    if core is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


def cores() -> tuple[int | None, int | None]:
    """(server core, load core): 0 and 1 with taskset and >= 2 usable cores, else no pinning."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if shutil.which("taskset") is None or len(usable) < 2:
        return None, None
    return usable[0], usable[1]


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again; the tiny race is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def tls_files() -> Iterator[TLSFiles]:
    """Write a trustme CA and a leaf for 127.0.0.1 and localhost into a temporary folder."""
    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="asgigw-bench-") as folder:
        files = TLSFiles(cert=f"{folder}/cert.pem", key=f"{folder}/key.pem", ca=f"{folder}/ca.pem")
        leaf.cert_chain_pems[0].write_to_path(files.cert)
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(files.cert, append=True)
        leaf.private_key_pem.write_to_path(files.key)
        authority.cert_pem.write_to_path(files.ca)
        yield files


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its live descendants (/proc).

    Descendants count because some servers (granian) serve from a child process.
    """
    total = 0.0
    pending = [pid]
    for _ in range(256):  # a server has a handful of processes; bound the walk anyway
        if not pending:
            break
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat", encoding="ascii") as stat:
                # Field 2 (comm) may contain spaces; the fields after its closing parenthesis do not.
                fields = stat.read().rpartition(")")[2].split()
            # utime and stime are fields 14 and 15 of the whole line (proc(5)), in clock ticks.
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process (or a thread) ended meanwhile
    return total


class ServerProcess:
    """One started server: its process, log file, and the URL it answers on."""

    def __init__(self, name: str, argv: list[str], options: Options, log_folder: str) -> None:
        self.name = name
        self.options = options
        self.log_path = Path(log_folder) / f"{name}-{options.port}.log"
        with open(self.log_path, "wb") as log:
            # A new session makes the server its own process-group leader: stop() kills
            # exactly this tree, never anything else on the machine.
            self.process = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    @property
    def pid(self) -> int:
        """Process id of the server (taskset execs it, so this is the serving process)."""
        return self.process.pid

    @property
    def url(self) -> str:
        """Where wrk should send requests."""
        scheme = "https" if self.options.tls else "http"
        return f"{scheme}://{HOST}:{self.options.port}/"

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's own output, for error messages."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll with a real GET until the server answers 200; fail early if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._probe() == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def _probe(self) -> int:
        connection: http.client.HTTPConnection
        if self.options.tls is None:
            connection = http.client.HTTPConnection(HOST, self.options.port, timeout=2)
        else:
            context = ssl.create_default_context(cafile=self.options.tls.ca)
            connection = http.client.HTTPSConnection(HOST, self.options.port, timeout=2, context=context)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Kill any leftover in the group even when the leader has exited (a worker it spawned).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


class ServerPool:
    """Starts servers and guarantees every one of them is stopped, even on errors or Ctrl-C."""

    def __init__(self, server_core: int | None) -> None:
        self.server_core = server_core
        self.running: list[ServerProcess] = []
        self._logs = tempfile.TemporaryDirectory(prefix="asgigw-bench-logs-")

    def start(self, name: str, tls: TLSFiles | None, keep_alive: int = 5) -> ServerProcess:
        """Start server ``name`` on a free port and return once it answers."""
        options = Options(port=free_port(), tls=tls, keep_alive=keep_alive)
        server = ServerProcess(name, pinned(SERVERS[name](options), self.server_core), options, self._logs.name)
        self.running.append(server)
        try:
            server.wait_ready()
        except BaseException:
            self.stop(server)
            raise
        return server

    def stop(self, server: ServerProcess) -> None:
        """Stop one server and forget it."""
        server.stop()
        if server in self.running:
            self.running.remove(server)

    def close(self) -> None:
        """Stop everything still running and remove the log folder."""
        for server in list(self.running):
            self.stop(server)
        self._logs.cleanup()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
