"""Replacing live workers with no failed request: --max-requests (+ jitter), SIGUSR2, --reload.

Real ``python -m gateway`` supervisors with spawned workers on 127.0.0.1; the app
(tests/apps/pid.py) answers with the serving worker's pid, so a test sees replacements
happen. Load is bounded in count and time; every request must get a complete 200.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets

from gateway import platform, worker_process
from gateway.config import Config, ConfigError
from gateway.reload_watch import ChangeFilter, FileWatcher
from gateway.server import Server
from tests.apps import pid as pid_app
from tests.apps.basic import SLOW_PIECE, SLOW_PIECES
from tests.apps.process import ServerProcess, gateway_process
from tests.test_workers import gone_within, worker_pids

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals to subprocesses")


@dataclass
class Load:
    """Requests on new connections, one after another, until stopped (bounded)."""

    url: str
    pids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, limit: int = 5000, seconds: float = 40.0) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and len(self.pids) + len(self.failures) < limit and time.monotonic() < deadline:
            try:
                # A new connection each time: what is measured is the listener, not keep-alive.
                response = httpx.get(self.url, headers={"connection": "close"}, timeout=10)
                if response.status_code != 200:
                    self.failures.append(f"status {response.status_code}")
                else:
                    self.pids.append(int(response.json()["pid"]))
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def running(load: Load) -> Iterator[Load]:
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        yield load
    finally:
        load.stop()
        thread.join(20)


def wait_until(condition: object, seconds: float, what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds}s; stderr:\n{server.stderr}")
        time.sleep(0.05)


# -- --max-requests -----------------------------------------------------------------------


@pytest.mark.slow
def test_max_requests_replaces_the_worker_and_no_request_fails() -> None:
    args = ("--port", "0", "--workers", "1", "--max-requests", "20", "--graceful-timeout", "10", "tests.apps.pid:app")
    with gateway_process(*args) as server:
        first = worker_pids(server, 1)[0]
        # A slow response started on the first worker must complete although it is replaced.
        slow: list[bytes] = []
        slow_thread = threading.Thread(
            target=lambda: slow.append(httpx.get(f"{server.url}/slow?seconds=3", timeout=15).content), daemon=True
        )
        slow_thread.start()
        with running(Load(server.url)) as load:
            wait_until(lambda: len(set(load.pids)) >= 3, 30, "three workers in turn", server)
        slow_thread.join(15)
        assert slow == [SLOW_PIECE * SLOW_PIECES]
        assert load.failures == []
        assert load.pids[0] == first
        # Each worker served its share before being replaced (20, plus what came in while
        # its replacement started); never fewer.
        runs = [pid for index, pid in enumerate(load.pids) if index == 0 or load.pids[index - 1] != pid]
        assert len(runs) == len(set(runs)), "a replaced worker served again after its successor"
        assert "served 20 requests (--max-requests): asking for a replacement" in server.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    assert gone_within(list(set(load.pids)), 5)


def test_each_worker_draws_its_own_jitter() -> None:
    config = Config(max_requests=100, max_requests_jitter=5)
    limits = set()
    for _ in range(200):
        server = Server(pid_app.app, config)
        worker_process._count_towards_recycling(server, config, status=None)  # type: ignore[arg-type]
        limits.add(server.context.request_limit)
    assert limits <= set(range(100, 106))
    assert len(limits) > 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_requests": -1}, "--max-requests and --max-requests-jitter must be 0 or more"),
        ({"max_requests_jitter": 5}, "--max-requests-jitter needs --max-requests N"),
        ({"reload_dirs": (".",)}, "--reload-dir, --reload-include and --reload-exclude need --reload"),
        ({"reload": True, "reload_dirs": ("/no/such/folder",)}, "--reload-dir '/no/such/folder': not a directory"),
    ],
)
def test_recycling_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**options)  # type: ignore[arg-type]


def test_recycling_needs_an_importable_app() -> None:
    with pytest.raises(ConfigError, match="needs the app as a 'module:attribute' string"):
        asyncio.run(_serve_object(Config(max_requests=10)))


async def _serve_object(config: Config) -> int:
    from gateway.server import serve

    return await serve(pid_app.app, config, handle_signals=False)


# -- SIGUSR2: restart every worker ----------------------------------------------------------


@pytest.mark.slow
def test_sigusr2_restarts_every_worker_under_load() -> None:
    with gateway_process("--port", "0", "--workers", "2", "--graceful-timeout", "10", "tests.apps.pid:app") as server:
        old = worker_pids(server, 2)
        with running(Load(server.url)) as load:
            wait_until(lambda: len(load.pids) >= 20, 15, "first requests", server)
            server.send_signal(signal.SIGUSR2)
            new = [pid for pid in worker_pids(server, 4) if pid not in old]
            assert len(new) == 2
            assert gone_within(old, 15), server.stderr
            seen = len(load.pids)
            wait_until(lambda: len(load.pids) >= seen + 20, 15, "requests after the restart", server)
        assert load.failures == []
        assert set(load.pids[-10:]) <= set(new)
        assert "SIGUSR2: restarting 2 workers" in server.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0


def test_restart_signal_is_posix_only() -> None:
    loop = asyncio.new_event_loop()
    try:
        calls: list[str] = []
        undo = platform.install_restart_signal(loop, lambda: calls.append("restart"), windows=True)
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
        undo()
        undo = platform.install_restart_signal(loop, lambda: calls.append("restart"), windows=False)
        assert signal.getsignal(signal.SIGUSR2) is not signal.SIG_DFL
        undo()
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    finally:
        loop.close()


# -- --reload ---------------------------------------------------------------------------------

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({{"type": message["type"] + ".complete"}})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({{"type": "websocket.accept"}})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def write_app(folder: Path, version: str, broken: bool = False) -> None:
    text = APP_SOURCE.format(version=version) + ("\ndef broken(:\n" if broken else "")
    # Write then rename, as editors do: the watcher never sees half a file.
    (folder / "reloaded.tmp").write_text(text)
    (folder / "reloaded.tmp").replace(folder / "reloaded.py")


def answer_becomes(url: str, expected: str, seconds: float, server: ServerProcess) -> None:
    def answered() -> bool:
        try:
            return httpx.get(url, timeout=5).text == expected
        except httpx.HTTPError as exc:
            raise AssertionError(f"request failed during reload: {exc!r}\n{server.stderr}") from exc

    wait_until(answered, seconds, f"the answer {expected!r}", server)


@pytest.mark.slow
def test_reload_restarts_on_change_keeps_serving_broken_code_and_closes_websockets_1001(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    args = ("--port", "0", "--reload", "--app-dir", str(tmp_path), "--graceful-timeout", "5", "reloaded:app")
    with gateway_process(*args) as server:
        answer_becomes(server.url, "v1", 5, server)
        assert f"reload: watching {tmp_path}" in server.stderr

        async def websocket_closed_by_reload() -> int | None:
            async with websockets.connect(server.url.replace("http", "ws")) as ws:
                write_app(tmp_path, "v2")
                await asyncio.wait_for(ws.wait_closed(), 20)
                return ws.close_code

        assert asyncio.run(websocket_closed_by_reload()) == 1001
        answer_becomes(server.url, "v2", 10, server)

        write_app(tmp_path, "v3", broken=True)
        server.wait_for(r"the replacement for worker \d+ failed to start .*keeps serving", 20)
        assert httpx.get(server.url, timeout=5).text == "v2"
        assert "SyntaxError" in server.stderr

        write_app(tmp_path, "v4")
        answer_becomes(server.url, "v4", 20, server)
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0


@pytest.mark.slow
def test_reload_waits_for_a_fix_when_the_first_start_fails(tmp_path: Path) -> None:
    write_app(tmp_path, "v1", broken=True)
    args = ("--port", "0", "--reload", "--reload-dir", str(tmp_path), "--app-dir", str(tmp_path), "reloaded:app")
    with gateway_process(*args, wait_serving=False) as server:
        server.wait_for("failed to start .*waiting for a file to change", 20)
        assert server.process.poll() is None
        write_app(tmp_path, "fixed")
        server.wait_for("asgigw serving", 20)
        answer_becomes(server.url, "fixed", 10, server)


# -- the file watcher itself, both backends ---------------------------------------------------


def test_change_filter_defaults_includes_and_excludes() -> None:
    default = ChangeFilter()
    assert default.matches("app.py")
    assert default.matches("pkg/views.py")
    assert not default.matches("README.md")
    assert not default.matches("pkg/__pycache__/views.py")
    assert not default.matches(".git/hooks/x.py")
    assert not default.matches("venv/lib/site.py")
    assert not default.matches(".#views.py")  # an editor's lock file
    custom = ChangeFilter(includes=["*.py", "*.html", ".env"], excludes=["migrations"])
    assert custom.matches("templates/index.html")
    assert custom.matches(".env")  # named explicitly: wins over the default '.*'
    assert not custom.matches("app/migrations/0001_initial.py")


def test_a_project_inside_a_dot_folder_is_still_watched(tmp_path: Path) -> None:
    project = tmp_path / ".projects" / "site"
    project.mkdir(parents=True)
    (project / "app.py").write_text("1")
    watcher = FileWatcher([str(project)], ChangeFilter(), lambda paths: None, backend="poll")
    assert watcher._scan().keys() == {str(project / "app.py")}


@pytest.mark.parametrize("backend", ["poll", "watchfiles"])
def test_file_watcher_reports_relevant_changes(tmp_path: Path, backend: str) -> None:
    if backend == "watchfiles":
        pytest.importorskip("watchfiles", reason="the reload extra is not installed")
    (tmp_path / "app.py").write_text("1")
    (tmp_path / "__pycache__").mkdir()
    batches: list[list[str]] = []
    seen = threading.Event()

    def on_change(paths: list[str]) -> None:
        batches.append(paths)
        seen.set()

    watcher = FileWatcher([str(tmp_path)], ChangeFilter(), on_change, backend=backend, poll_interval=0.1)
    watcher.start()
    try:
        (tmp_path / "notes.txt").write_text("ignored")
        (tmp_path / "__pycache__" / "app.py").write_text("ignored")
        time.sleep(0.3)
        (tmp_path / "app.py").write_text("2")
        assert seen.wait(10), "no change reported"
    finally:
        watcher.stop()
    assert {path for batch in batches for path in batch} == {str(tmp_path / "app.py")}
