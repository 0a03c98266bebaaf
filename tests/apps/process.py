"""Running ``python -m gateway`` as a real subprocess for CLI, TLS, lifespan and shutdown tests.

Every command line goes through :func:`gateway_argv`, so a change to how the CLI chooses
plain HTTP (today ``--no-tls``) is a one-line change here. Waits are bounded and every
process is killed in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
# What the CLI needs to serve plain HTTP (without it, it serves HTTPS with a dev certificate).
PLAIN_HTTP = ("--no-tls",)
SERVING = re.compile(r"asgigw serving (\S.*?) \(")
URL = re.compile(r"(https?)://(\[[0-9a-fA-F:.]+\]|[^\s:/,]+):(\d+)")
START_TIMEOUT = 10.0
ASGIGW_SCRIPT = Path(sys.executable).parent / ("asgigw.exe" if sys.platform == "win32" else "asgigw")


def gateway_argv(
    *args: str, plain: bool = True, script: bool = False, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> list[str]:
    """``python -m gateway ARGS``; ``plain`` adds what makes the CLI serve plain HTTP.

    ``script`` runs the installed ``asgigw`` entry point instead, whose ``sys.path`` does
    not start with the current directory (``python -m`` puts it there by itself). ``cwd``
    and ``env`` are where and with what extra variables it will run (see ``_free_port``).
    """
    command = [str(ASGIGW_SCRIPT)] if script else [sys.executable, "-m", "gateway"]
    return [*command, *(PLAIN_HTTP if plain else ()), *_free_port(args, cwd, env or {}), *args]


def _free_port(args: tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    """``--port 0`` when nothing else in the run chooses the address: no test binds 8000.

    Runs expected to fail can still reach the listener (an app that fails at its first
    call, workers), and the default port fails when another process holds it. Left alone:
    runs that name an address, or may take one from a config file, an env file or an
    ``ASGIGW_`` variable (or ``[tool.asgigw]`` in the pyproject.toml where it runs), and
    commands that do not serve.
    """
    if args[:1] == ("certs",) or {"--help", "--version", "--print-config"} & set(args):
        return ()
    chosen = ("--port", "--bind", "-b", "--config", "--env-file")
    if any(arg.split("=")[0] in chosen for arg in args) or {"ASGIGW_PORT", "ASGIGW_BIND"} & set(env):
        return ()
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file() and "[tool.asgigw]" in pyproject.read_text(errors="replace"):
        return ()
    return ("--port", "0")


def gateway_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: ours (with conftest's ASGIGW_CA_DIR), no key password."""
    environ = {key: value for key, value in os.environ.items() if key != "ASGIGW_KEY_PASSWORD"}
    environ["COLUMNS"] = "100"
    environ.update(extra)
    return environ


def run_gateway(
    *args: str, plain: bool = True, script: bool = False, cwd: Path = ROOT, timeout: float = 10.0, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command that is expected to exit by itself (errors, ``--help``)."""
    return subprocess.run(
        gateway_argv(*args, plain=plain, script=script, cwd=cwd, env=env),
        cwd=cwd,
        env=gateway_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A port that was free a moment ago (for tests that cannot read the serving line)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OutputLines:
    """Lines of a subprocess's pipe, collected by a thread as they arrive, waited on by pattern."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.lines: list[str] = []
        self._name = name
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        """Everything collected so far."""
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match[str]:
        """Wait for a line (from line number ``after`` on) matching ``pattern``; fail on EOF or timeout."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = compiled.search(line)
                    if match:
                        return match
                seen = max(seen, len(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._reader.is_alive() and seen == len(self.lines)):
                    name = self._name
                    raise AssertionError(f"no {name} line matching {pattern!r}; {name}:\n{''.join(self.lines)}")
                self._changed.wait(min(remaining, 0.1))

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the reader to reach the end of the pipe."""
        self._reader.join(timeout)


class ServerProcess:
    """A ``python -m gateway`` subprocess whose stderr lines are collected as they arrive."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        assert self.process.stderr is not None
        self.output = OutputLines(self.process.stderr, "stderr")

    @property
    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.output.text

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Wait for a stderr line matching ``pattern``; fail (with stderr) on exit or timeout."""
        return self.output.wait_for(pattern, timeout)

    def urls(self) -> list[str]:
        """The URLs of the start-up line, e.g. ``['http://127.0.0.1:41234']``."""
        served = self.wait_for(SERVING.pattern).group(1)
        return [match.group(0) for match in URL.finditer(served)]

    @property
    def url(self) -> str:
        """The first URL served."""
        return self.urls()[0]

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the server process."""
        self.process.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit; return its exit code (raises on timeout)."""
        code = self.process.wait(timeout)
        self.output.join()
        return code

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if needed; always reap the process and close the pipe."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            self.output.join()
            if self.process.stderr is not None:
                self.process.stderr.close()


@contextlib.contextmanager
def gateway_process(
    *args: str, plain: bool = True, script: bool = False, cwd: Path = ROOT, wait_serving: bool = True, **env: str
) -> Iterator[ServerProcess]:
    """Start ``python -m gateway ARGS``; by default wait until it says it is serving."""
    server = ServerProcess(gateway_argv(*args, plain=plain, script=script, cwd=cwd, env=env), cwd, gateway_env(**env))
    try:
        if wait_serving:
            server.wait_for(SERVING.pattern)
        yield server
    finally:
        server.stop()


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = START_TIMEOUT) -> None:
    """Poll until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)
