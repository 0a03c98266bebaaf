"""``--workers N``: real ``python -m gateway`` supervisors with spawned worker processes, real
sockets on 127.0.0.1 and real signals. The app (tests/apps/pid.py) answers with the pid of
the worker that served the request, so a test can tell the workers apart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import gateway
from gateway import platform, worker_process
from gateway import workers as workers_module
from gateway.config import Config, ConfigError
from gateway.server import Server
from gateway.workers import MAX_START_FAILURES, RESTART_DELAY, RESTART_DELAY_MAX, AppSpec, Supervisor
from tests.apps import pid as pid_app
from tests.apps.basic import SLOW_PIECE, SLOW_PIECES
from tests.apps.process import ROOT, SERVING, ServerProcess, gateway_argv, gateway_env, run_gateway
from tests.conftest import CertFiles
from tests.test_shutdown import Client, port_of, refused_soon

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals to subprocesses")

WORKER_READY = re.compile(r"\[worker (\d+)\] worker ready")


def worker_pids(server: ServerProcess, count: int) -> list[int]:
    """The pids of the first ``count`` workers that said they are ready."""
    deadline = time.monotonic() + 15
    while True:
        pids = [int(match.group(1)) for match in WORKER_READY.finditer(server.stderr)]
        if len(pids) >= count:
            return pids[:count]
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise AssertionError(f"{count} workers did not get ready; stderr:\n{server.stderr}")
        time.sleep(0.05)


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(is_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tls_client(cert_files: CertFiles, http2: bool) -> httpx.Client:
    # A fresh context per client: httpx sets ALPN on the context it is given.
    return httpx.Client(verify=ssl.create_default_context(cafile=str(cert_files.ca)), http2=http2, timeout=10)


def stop_and_reap(server: ServerProcess) -> None:
    """Stop the supervisor, then kill any of its workers still running, then close the pipe.

    A worker that outlived its supervisor (the bug some tests look for) would keep the
    stderr pipe open and hang the harness; it is stopped the hard way, after the checks.
    """
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
    for pid in {int(match.group(1)) for match in WORKER_READY.finditer(server.stderr)}:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)
    server.stop()


@contextlib.contextmanager
def running(argv: list[str], **env: str) -> Iterator[ServerProcess]:
    """A subprocess that starts workers, stopped by :func:`stop_and_reap` at the end."""
    server = ServerProcess(argv, ROOT, gateway_env(**env))
    try:
        yield server
    finally:
        stop_and_reap(server)


@contextlib.contextmanager
def supervisor(*args: str, plain: bool = True, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``python -m gateway ARGS`` (with --workers), once it says it is serving."""
    with running(gateway_argv(*args, plain=plain), **(env or {})) as server:
        server.wait_for(SERVING.pattern)
        yield server


@pytest.fixture
def three_workers() -> Iterator[ServerProcess]:
    with supervisor("--port", "0", "--workers", "3", "tests.apps.pid:app") as server:
        yield server


# -- serving ------------------------------------------------------------------------------


def test_new_connections_reach_several_workers(three_workers: ServerProcess) -> None:
    server = three_workers
    workers = worker_pids(server, 3)
    supervisor = int(server.wait_for(r"\[supervisor (\d+)\] asgigw serving").group(1))
    assert "3 worker processes" in server.stderr

    def one_request(_: int) -> int:
        # A new connection each time; the blocking sleep holds that worker's loop, so
        # concurrent connections must be accepted by the others.
        response = httpx.get(f"{server.url}/?block=0.05", timeout=10)
        assert response.status_code == 200
        return int(response.json()["pid"])

    with ThreadPoolExecutor(6) as pool:
        served_by = list(pool.map(one_request, range(36)))
    assert set(served_by) <= set(workers)
    assert len(set(served_by)) >= 2, served_by
    assert supervisor not in served_by
    # Access-log lines name the worker that wrote them.
    for pid in set(served_by):
        assert re.search(rf'\[worker {pid}\] 127\.0\.0\.1:\d+ - "GET /\?block=0\.05 HTTP/1\.1" 200', server.stderr)


def test_tls_http1_and_http2_through_workers(cert_files: CertFiles) -> None:
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    with supervisor("--port", "0", "--workers", "2", *tls, "tests.apps.pid:app", plain=False) as server:
        assert server.url.startswith("https://127.0.0.1:")
        workers = worker_pids(server, 2)
        with tls_client(cert_files, http2=True) as client:
            over_http2 = client.get(server.url)
        with tls_client(cert_files, http2=False) as client:
            over_http1 = client.get(server.url)
    assert (over_http2.http_version, over_http2.json()["scheme"]) == ("HTTP/2", "https")
    assert (over_http1.http_version, over_http1.json()["scheme"]) == ("HTTP/1.1", "https")
    assert {over_http2.json()["pid"], over_http1.json()["pid"]} <= set(workers)
    # The certificate line comes once, from the supervisor, not once per worker.
    assert server.stderr.count(f"TLS: certificate {cert_files.cert}") == 1


def test_workers_import_the_app_with_factory_and_app_dir() -> None:
    # basic:make_app is only importable with --app-dir tests/apps, and is only an app if called.
    args = ("--port", "0", "--workers", "2", "--factory", "--app-dir", "tests/apps", "basic:make_app")
    with supervisor(*args) as server:
        worker_pids(server, 2)
        assert httpx.get(f"{server.url}/made", timeout=10).json()["path"] == "/made"


# -- stopping -----------------------------------------------------------------------------


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0() -> None:
    args = ("--port", "0", "--workers", "2", "tests.apps.pid:app")
    with supervisor(*args) as server:
        workers = worker_pids(server, 2)
        port = port_of(server.url)
        slow = Client(port)
        try:
            assert slow.start_response("/slow?seconds=2.5") == 200
            server.send_signal(signal.SIGTERM)
            server.wait_for(r"SIGTERM: stopping 2 workers")
            # Every copy of the listening socket closes, the supervisor's too: new clients
            # are refused at once, not queued in a backlog nobody accepts from.
            assert refused_soon(port, within=1.0)
            assert "app: slow response done" not in server.stderr
            body, complete = slow.read_body()
        finally:
            slow.close()
        assert server.wait(15) == 0
    assert complete
    assert body == SLOW_PIECE * SLOW_PIECES
    assert gone_within(workers, 2), "worker processes outlived the supervisor"
    stderr = server.stderr
    # Each worker was told over its pipe (only the supervisor got the signal).
    for pid in workers:
        assert f"[worker {pid}] stop requested by the supervisor" in stderr
        assert f"app: lifespan shutdown (pid {pid})" in stderr
    assert stderr.index("app: slow response done") < stderr.rindex("app: lifespan shutdown")
    assert "Traceback" not in stderr


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1) to start a process group")
def test_ctrl_c_in_a_terminal_is_one_graceful_stop_for_every_process() -> None:
    # A terminal's Ctrl+C goes to its whole process group: the supervisor and each worker
    # get SIGINT, then the workers also get "stop" over their pipes. That must count as one
    # stop request, not two (two would cut the request in flight off).
    argv = ["setsid", *gateway_argv("--port", "0", "--workers", "2", "tests.apps.pid:app")]
    with running(argv) as server:
        workers = worker_pids(server, 2)
        slow = Client(port_of(server.url))
        try:
            assert slow.start_response("/slow?seconds=1.5") == 200
            os.killpg(server.process.pid, signal.SIGINT)
            body, complete = slow.read_body()
        finally:
            slow.close()
        assert server.wait(15) == 0
    assert complete and body == SLOW_PIECE * SLOW_PIECES, server.stderr
    assert "second stop request" not in server.stderr
    for pid in workers:
        assert server.stderr.count(f"[worker {pid}] shutting down") == 1


@pytest.mark.slow
def test_second_signal_stops_the_workers_at_once() -> None:
    args = ("--port", "0", "--workers", "2", "--graceful-timeout", "60", "tests.apps.pid:app")
    with supervisor(*args) as server:
        worker_pids(server, 2)
        slow = Client(port_of(server.url))
        try:
            assert slow.start_response("/slow?seconds=30") == 200
            server.send_signal(signal.SIGINT)
            server.wait_for(r"SIGINT: stopping")
            server.send_signal(signal.SIGINT)
            assert server.wait(8) == 0
            _, complete = slow.read_body()
        finally:
            slow.close()
    assert not complete
    assert "second stop request: stopping the workers now" in server.stderr


@pytest.mark.slow
def test_killed_worker_is_replaced_and_the_port_keeps_answering() -> None:
    with supervisor("--port", "0", "--workers", "2", "tests.apps.pid:app") as server:
        first, second = worker_pids(server, 2)
        os.kill(first, signal.SIGKILL)
        # The other worker answers while the replacement starts.
        assert httpx.get(server.url, timeout=10).json()["pid"] == second
        server.wait_for(rf"worker {first} exited unexpectedly \(killed by SIGKILL\); starting a new one in 0\.5s")
        replacement = worker_pids(server, 3)[2]
        server.wait_for(rf"worker {replacement} replaced the one in slot")
        assert replacement not in (first, second)
        answered = {httpx.get(f"{server.url}/?block=0.05", timeout=10).json()["pid"] for _ in range(3)}
        assert answered <= {second, replacement}
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
    assert gone_within([second, replacement], 2)


def test_workers_of_a_killed_supervisor_exit_by_themselves() -> None:
    with supervisor("--port", "0", "--workers", "2", "tests.apps.pid:app") as server:
        workers = worker_pids(server, 2)
        port = port_of(server.url)
        server.send_signal(signal.SIGKILL)
        assert server.wait(5) == -signal.SIGKILL
        assert gone_within(workers, 5), "orphaned workers kept running"
        assert refused_soon(port)
    for pid in workers:
        assert f"[worker {pid}] the supervisor has gone away (its pipe closed); shutting down" in server.stderr


def test_sighup_reaches_every_worker(cert_files: CertFiles) -> None:
    # The file poller is off: only the forwarded SIGHUP can make the workers reload.
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key), "--cert-reload-interval", "0")
    with supervisor("--port", "0", "--workers", "2", *tls, "tests.apps.pid:app", plain=False) as server:
        workers = worker_pids(server, 2)
        server.send_signal(signal.SIGHUP)
        for pid in workers:
            server.wait_for(rf"\[worker {pid}\] TLS certificates reloaded \(SIGHUP, passed on by the supervisor\)")
        with tls_client(cert_files, http2=False) as client:
            assert client.get(server.url).status_code == 200


# -- failing to start ----------------------------------------------------------------------


def test_lifespan_startup_failure_stops_the_supervisor_with_exit_1() -> None:
    result = run_gateway("--port", "0", "--workers", "2", "tests.apps.pid:lifespan_failed", timeout=30)
    assert result.returncode == 1, result.stderr
    assert "application startup failed: no database in this worker" in result.stderr
    assert re.search(r"\[supervisor \d+\] worker \d+ failed to start \(exit code 1\); stopping", result.stderr)
    # No restart loop: at most one attempt per worker slot.
    assert result.stderr.count("application startup failed") <= 2
    assert "serving" not in result.stderr


def test_bad_certificate_fails_in_the_supervisor(cert_files: CertFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing-cert.pem"
    tls = ("--cert", str(missing), "--key", str(cert_files.key))
    result = run_gateway("--port", "0", "--workers", "2", *tls, "tests.apps.pid:app", plain=False)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    # The same one-line form as every other start-up error (docs/options.md).
    assert lines[0].startswith("asgigw: error: ")
    assert lines[0].endswith(f"certificate file not found: {missing}")


def test_port_in_use_fails_in_the_supervisor() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_gateway("--port", str(port), "--workers", "2", "tests.apps.pid:app")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(f"cannot listen on 127.0.0.1:{port}: address already in use")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps.no_such_module:app", "could not import module 'tests.apps.no_such_module' (looked in .)"),
        ("tests.apps.pid", "APP must look like 'module:attribute' (e.g. proj.asgi:application), got 'tests.apps.pid'"),
    ],
    ids=["import-in-workers", "form-in-supervisor"],
)
def test_app_errors_are_printed_once(target: str, message: str) -> None:
    result = run_gateway("--port", "0", "--workers", "3", target)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"asgigw: error: {message}"], result.stderr


# -- the Windows choices, on Linux -----------------------------------------------------------


def test_windows_choices_on_linux(cert_files: CertFiles) -> None:
    tls = [str(cert_files.cert), str(cert_files.key)]
    with running([sys.executable, "-m", "tests.apps.windows_choices", "0", "tests.apps.pid:app", *tls]) as server:
        workers = worker_pids(server, 2)
        assert server.stderr.count("worker ready, accepting connections (accept thread)") == 2

        def one_request(_: int) -> tuple[str, int]:
            with tls_client(cert_files, http2=True) as client:
                response = client.get(f"{server.url}/?block=0.05")
            return response.http_version, int(response.json()["pid"])

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(one_request, range(16)))
        assert {version for version, _ in answers} == {"HTTP/2"}
        assert {pid for _, pid in answers} == set(workers), answers
        # Handled by the signal.signal fallback (the Proactor loop has no add_signal_handler).
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
    assert gone_within(workers, 2)
    for pid in workers:
        assert f"[worker {pid}] stop requested by the supervisor" in server.stderr


def test_worker_context_is_spawn_everywhere() -> None:
    assert platform.worker_context().get_start_method() == "spawn"


def test_exit_descriptions_per_platform() -> None:
    assert platform.describe_exit(-9, windows=False) == "killed by SIGKILL"
    assert platform.describe_exit(3, windows=False) == "exit code 3"
    assert platform.describe_exit(platform.WINDOWS_CONTROL_C_EXIT, windows=True).startswith("ended by Ctrl+C")
    assert platform.describe_exit(1, windows=True) == "exit code 1"


# -- the supervisor in this process (its time constants shortened) --------------------------


def supervise(spec: AppSpec, config: Config, then: Callable[[Supervisor], None]) -> tuple[int, float, Supervisor]:
    """Run a Supervisor on a new loop here; call ``then`` once it announced; exit code, seconds."""

    async def scenario() -> tuple[int, float, Supervisor]:
        supervisor = Supervisor(spec, config)
        running = asyncio.create_task(supervisor.run())
        for _ in range(300):
            if supervisor._announced or running.done():
                break
            await asyncio.sleep(0.05)
        assert supervisor._announced, "the workers did not get ready"
        started = time.monotonic()
        then(supervisor)
        code = await asyncio.wait_for(running, 30)
        return code, time.monotonic() - started, supervisor

    return asyncio.run(scenario())


def test_a_worker_that_does_not_stop_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "STOP_MARGIN", 0.5)
    config = Config(port=0, workers=2, graceful_timeout=0.2, access_log=False)
    pids: list[int] = []

    def stop(supervisor: Supervisor) -> None:
        pids.extend(worker.pid for worker in supervisor.workers.values())
        # A real SIGTERM, taken by the supervisor's handler on its loop.
        os.kill(os.getpid(), signal.SIGTERM)

    # Its lifespan shutdown never answers: only the kill ends these workers.
    code, seconds, _ = supervise(AppSpec("tests.apps.basic:shutdown_hangs"), config, stop)
    assert code == 1
    assert seconds < 5
    assert len(pids) == 2 and gone_within(pids, 2)


@pytest.mark.slow
def test_replacements_that_keep_failing_stop_the_supervisor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(workers_module, "RESTART_DELAY", 0.01)
    flag = tmp_path / "fail"
    monkeypatch.setenv(pid_app.FAIL_FLAG, str(flag))
    config = Config(port=0, workers=2, access_log=False)
    first: dict[int, int] = {}

    def break_the_app(supervisor: Supervisor) -> None:
        flag.touch()
        first.update({worker.slot: worker.pid for worker in supervisor.workers.values()})
        os.kill(first[0], signal.SIGKILL)

    code, _, supervisor = supervise(AppSpec("tests.apps.pid:fails_once_flagged"), config, break_the_app)
    assert code == 1
    # Slot 0's replacements failed MAX_START_FAILURES times, then everything stopped.
    assert supervisor._start_failures == {0: MAX_START_FAILURES, 1: 0}
    assert gone_within(list(first.values()), 2)


def test_an_orphaned_worker_forces_its_own_shutdown_in_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_process, "ORPHAN_MARGIN", 0.05)
    server = Server(pid_app.app, Config(port=0, graceful_timeout=0.05))
    stops = worker_process.StopRequests()

    async def supervisor_gone() -> None:
        stops.attach(server)
        stops.on_command(worker_process.SUPERVISOR_GONE)
        assert server.shutdown_requested and not server.forced
        await asyncio.sleep(0.5)

    asyncio.run(supervisor_gone())
    # No one is left to send a second signal: the worker sends it to itself.
    assert server.forced


@pytest.mark.parametrize(
    ("events", "forced"),
    [
        (["signal", "stop"], False),  # Ctrl+C to the terminal: the signal came first
        (["stop", "signal"], False),  # ... or the supervisor's message did
        (["signal", "stop", "signal", "force"], True),  # a second Ctrl+C
        (["stop", "force"], True),  # the supervisor's second signal
        (["signal", "signal"], True),  # two signals sent to the worker alone
    ],
)
def test_stop_requests_from_signals_and_the_pipe(events: list[str], forced: bool) -> None:
    server = Server(pid_app.app, Config(port=0))
    stops = worker_process.StopRequests()
    stops.attach(server)
    for event in events:
        if event == "signal":
            stops.on_signal(signal.SIGINT)
        else:
            stops.on_command(event)
    assert server.shutdown_requested
    assert server.forced is forced


# -- configuration and the Python API ----------------------------------------------------------


def test_workers_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="--workers must be from 1 to"):
        Config(workers=0)
    result = run_gateway("--workers", "0", "tests.apps.pid:app")
    assert result.returncode == 2
    assert result.stderr.startswith("asgigw: error: --workers must be from 1 to")


def test_serve_in_this_process_refuses_several_workers() -> None:
    with pytest.raises(ConfigError, match="needs the app as a 'module:attribute' string"):
        asyncio.run(gateway.serve(pid_app.app, workers=2, port=0))


def test_python_api_runs_workers_from_an_app_spec() -> None:
    code = "import sys, gateway; sys.exit(gateway.run('tests.apps.pid:app', workers=2, port=0))"
    with running([sys.executable, "-c", code]) as server:
        workers = worker_pids(server, 2)
        assert httpx.get(server.url, timeout=10).json()["pid"] in workers
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0


def test_python_api_serves_an_app_spec_in_one_process() -> None:
    code = "import sys, gateway; sys.exit(gateway.run('tests.apps.pid:app', port=0))"
    with running([sys.executable, "-c", code]) as server:
        pid = httpx.get(server.url, timeout=10).json()["pid"]
        assert pid == server.process.pid
        assert "worker" not in server.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0


def test_restart_delay_doubles_and_is_capped() -> None:
    supervisor = Supervisor(AppSpec("tests.apps.pid:app"), Config(workers=2))
    delays = [supervisor._restart_delay(0) for _ in range(10)]
    assert delays[:3] == [RESTART_DELAY, 2 * RESTART_DELAY, 4 * RESTART_DELAY]
    assert max(delays) == RESTART_DELAY_MAX
    assert supervisor._restart_delay(1) == RESTART_DELAY
