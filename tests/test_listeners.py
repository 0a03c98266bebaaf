"""Listening sockets that are not --bind addresses: --uds, --fd and systemd socket activation,
each with TLS and workers, on real sockets with real clients."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.config import Config, ConfigError
from tests.apps.process import ROOT, ServerProcess, gateway_argv, gateway_env, gateway_process, run_gateway
from tests.conftest import CertFiles

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and descriptor passing")


@pytest.fixture
def socket_path() -> Iterator[str]:
    # A short path: AF_UNIX paths are limited to about 100 bytes, pytest's tmp_path is long.
    folder = tempfile.mkdtemp(prefix="asgigw-")
    yield os.path.join(folder, "s.sock")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


def uds_get(path: str, url: str = "http://localhost/", **client: object) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=path, **client)  # type: ignore[arg-type]
    with httpx.Client(transport=transport, timeout=10) as http:
        return http.get(url)


@contextmanager
def started(argv: list[str], *, pass_fds: tuple[int, ...] = ()) -> Iterator[ServerProcess]:
    """A gateway subprocess that inherits ``pass_fds``; waits for its start-up line."""
    server = ServerProcess(argv, ROOT, gateway_env(), pass_fds)
    try:
        server.wait_for("asgigw serving")
        yield server
    finally:
        server.stop()


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.set_inheritable(True)
    return sock


# -- --uds ----------------------------------------------------------------------------------


def test_uds_serves_plain_http_with_its_mode_and_is_removed_at_the_end(socket_path: str) -> None:
    with gateway_process("--uds", socket_path, "--uds-mode", "660", "tests.apps.basic:app") as server:
        assert f"http on unix:{socket_path}" in server.stderr
        response = uds_get(socket_path, "http://localhost/hello")
        assert response.status_code == 200
        assert response.json()["path"] == "/hello"
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
        # No TCP listener: --host/--port are replaced by --uds.
        assert "http://127.0.0.1:8000" not in server.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not os.path.exists(socket_path)


def test_uds_with_tls_and_http2(socket_path: str, cert_files: CertFiles) -> None:
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    with gateway_process("--uds", socket_path, *tls, "tests.apps.basic:app", plain=False):
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        response = uds_get(socket_path, "https://localhost/x", verify=context, http2=True)
        assert response.status_code == 200
        assert response.http_version == "HTTP/2"
        assert response.json()["scheme"] == "https"


def test_uds_with_workers(socket_path: str) -> None:
    with gateway_process("--uds", socket_path, "--workers", "2", "tests.apps.pid:app") as server:
        pids = {uds_get(socket_path).json()["pid"] for _ in range(20)}
        assert pids and server.process.pid not in pids
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    assert not os.path.exists(socket_path)


def test_stale_socket_file_is_replaced(socket_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(socket_path)
    stale.close()  # the file stays, nobody listens: what a killed server leaves behind
    with gateway_process("--uds", socket_path, "tests.apps.basic:app") as server:
        assert "removed the stale socket file" in server.stderr
        assert uds_get(socket_path).status_code == 200


def test_live_socket_and_other_files_are_errors(socket_path: str) -> None:
    live = socket.socket(socket.AF_UNIX)
    live.bind(socket_path)
    live.listen()
    try:
        result = run_gateway("--uds", socket_path, "tests.apps.basic:app")
    finally:
        live.close()
        os.unlink(socket_path)
    assert result.returncode == 2
    assert f"--uds {socket_path}: another process is listening on it" in result.stderr.splitlines()[-1]
    Path(socket_path).write_text("not a socket")
    result = run_gateway("--uds", socket_path, "tests.apps.basic:app")
    assert result.returncode == 2
    assert "the path exists and is not a socket" in result.stderr.splitlines()[-1]


def test_uds_is_refused_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ConfigError, match="Unix domain sockets are not served on Windows"):
        Config(uds=("x.sock",))


def test_uds_mode_must_be_octal() -> None:
    result = run_gateway("--uds", "/tmp/x.sock", "--uds-mode", "rw", "tests.apps.basic:app")
    assert result.returncode == 2
    assert "'rw' is not an octal file mode" in result.stderr


# -- --fd -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fd_serves_an_inherited_socket(workers: str) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    try:
        argv = gateway_argv("--fd", str(sock.fileno()), "--workers", workers, "tests.apps.pid:app")
        with started(argv, pass_fds=(sock.fileno(),)) as server:
            assert f"http://127.0.0.1:{port}" in server.stderr
            assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        sock.close()


def test_fd_that_is_not_a_listening_socket() -> None:
    with open(os.devnull) as devnull:
        fd = devnull.fileno()
        argv = gateway_argv("--fd", str(fd), "tests.apps.basic:app")
        result = subprocess.run(
            argv, cwd=ROOT, env=gateway_env(), pass_fds=(devnull.fileno(),), capture_output=True, text=True, timeout=20
        )
    assert result.returncode == 2
    assert f"--fd {fd}: not an open socket" in result.stderr.splitlines()[-1]


# -- systemd socket activation ----------------------------------------------------------------

# What systemd does between fork and exec: the sockets at descriptors 3, 4, ... and
# LISTEN_PID set to the pid that then runs asgigw (exec keeps it).
ACTIVATE = """
import os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
moved = [os.dup(fd) for fd in fds]
for index, fd in enumerate(moved):
    os.dup2(fd, 3 + index)
    os.set_inheritable(3 + index, True)  # dup2 onto itself keeps dup's close-on-exec
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[2] == "self" else "1"
os.environ["LISTEN_FDNAMES"] = sys.argv[3]
os.execv(sys.executable, [sys.executable, *sys.argv[4:]])
"""


def activated(sockets: list[socket.socket], names: str, *args: str, pid: str = "self") -> list[str]:
    numbers = ",".join(str(sock.fileno()) for sock in sockets)
    return [sys.executable, "-c", ACTIVATE, numbers, pid, names, *gateway_argv(*args)[1:]]


def test_systemd_sockets_with_names_and_tls(cert_files: CertFiles) -> None:
    app_socket, redirect_socket = listening_socket(), listening_socket()
    app_port, redirect_port = app_socket.getsockname()[1], redirect_socket.getsockname()[1]
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    try:
        argv = activated([app_socket, redirect_socket], "web:redirect", *tls, "--workers", "2", "tests.apps.pid:app")
        fds = (app_socket.fileno(), redirect_socket.fileno())
        with started([a for a in argv if a != "--no-tls"], pass_fds=fds) as server:
            context = ssl.create_default_context(cafile=str(cert_files.ca))
            response = httpx.get(f"https://127.0.0.1:{app_port}/", verify=context)
            assert response.status_code == 200
            moved = httpx.get(f"http://127.0.0.1:{redirect_port}/a?b=1", headers={"host": "example.test"})
            assert moved.status_code == 308
            assert moved.headers["location"] == f"https://example.test:{app_port}/a?b=1"
            # The variables were for asgigw: the app never sees them.
            assert "LISTEN_FDS" not in server.stderr
    finally:
        app_socket.close()
        redirect_socket.close()


def test_systemd_variables_for_another_process_are_ignored() -> None:
    sock = listening_socket()
    try:
        argv = activated([sock], "", "--port", "0", "tests.apps.basic:app", pid="other")
        with started(argv, pass_fds=(sock.fileno(),)) as server:
            # Served on its own --port instead; the inherited socket is left alone.
            assert f":{sock.getsockname()[1]}" not in server.stderr.split("asgigw serving", 1)[1].splitlines()[0]
    finally:
        sock.close()


def test_systemd_unit_from_a_config_file_with_metrics_recycling_and_health(tmp_path: Path) -> None:
    """What docs/deploy.md describes: a config file, systemd's sockets, metrics, recycling."""
    web = listening_socket()
    port = web.getsockname()[1]
    config = tmp_path / "asgigw.toml"
    config.write_text(
        'app = "tests.apps.pid:app"\n'
        'bind = ["127.0.0.1:1"]\n'  # replaced by systemd's socket: never bound
        "no-tls = true\n"
        "workers = 2\n"
        "max-requests = 5\n"
        'metrics-bind = "127.0.0.1:0"\n'
        'health-path = "/healthz"\n'
    )
    try:
        argv = [a for a in activated([web], "web", "--config", str(config)) if a != "--no-tls"]
        with started(argv, pass_fds=(web.fileno(),)) as server:
            assert f"http://127.0.0.1:{port}" in server.stderr
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
            pids = {
                httpx.get(f"http://127.0.0.1:{port}/", headers={"connection": "close"}).json()["pid"] for _ in range(30)
            }
            assert len(pids) > 2, "workers were recycled after 5 requests each"
            metrics_port = int(server.wait_for(r"metrics at http://127\.0\.0\.1:(\d+)/metrics").group(1))
            assert "asgigw_requests_total" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            server.send_signal(signal.SIGTERM)
            assert server.wait(20) == 0
    finally:
        web.close()
