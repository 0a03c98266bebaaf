"""gateway/platform.py: the POSIX/Windows split.

Two halves: an AST lint that keeps POSIX-only calls out of every module but
``gateway/platform.py`` (so the code keeps importing and running on Windows), and the
Windows code paths of ``platform`` exercised on Linux with real signals sent to this process.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from gateway import platform

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"

# ``os`` functions that do not exist on Windows.
POSIX_OS_FUNCTIONS = {"fork", "setsid", "getuid", "geteuid", "killpg"}
# Methods the Proactor loop lacks (any object: the loop is rarely named ``loop``).
POSIX_LOOP_METHODS = {"add_signal_handler", "remove_signal_handler"}
POSIX_SIGNALS = {"SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT"}
POSIX_MODULES = {"uvloop", "fcntl", "pwd", "grp", "resource", "termios"}


def _forbidden_attribute(node: ast.Attribute) -> str | None:
    owner = node.value.id if isinstance(node.value, ast.Name) else None
    if owner == "os" and node.attr in POSIX_OS_FUNCTIONS:
        return f"os.{node.attr} does not exist on Windows"
    if node.attr in POSIX_LOOP_METHODS:
        return f"{node.attr} is missing on the Windows Proactor loop"
    if node.attr == "SO_REUSEPORT":
        return "SO_REUSEPORT does not exist on Windows"
    if node.attr in POSIX_SIGNALS:
        return f"signal {node.attr} does not exist on Windows"
    return None


def _forbidden_import(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
        return [f"import {name}: POSIX-only module" for name in modules if name.split(".")[0] in POSIX_MODULES]
    module = node.module or ""
    if module.split(".")[0] in POSIX_MODULES:
        return [f"from {module} import: POSIX-only module"]
    forbidden = {"os": POSIX_OS_FUNCTIONS, "signal": POSIX_SIGNALS, "socket": {"SO_REUSEPORT"}}.get(module, set())
    return [f"from {module} import {alias.name}: not on Windows" for alias in node.names if alias.name in forbidden]


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def posix_only_uses(source: str, filename: str) -> list[str]:
    """``file:line: reason`` for every POSIX-only call, attribute or import in ``source``."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        reasons: list[str] = []
        if isinstance(node, ast.Attribute):
            reason = _forbidden_attribute(node)
            reasons = [reason] if reason else []
        elif isinstance(node, ast.Import | ast.ImportFrom):
            reasons = _forbidden_import(node)
        elif isinstance(node, ast.keyword) and node.arg == "reuse_address" and _is_true(node.value):
            reasons = ["reuse_address=True: on Windows SO_REUSEADDR lets a second server bind the port"]
        problems.extend(f"{filename}:{node.lineno}: {reason}" for reason in reasons)
    return sorted(problems)


def gateway_modules() -> list[Path]:
    """Every module of the package except platform.py, the one place allowed POSIX calls."""
    modules = sorted(path for path in GATEWAY.rglob("*.py") if path != GATEWAY / "platform.py")
    assert len(modules) > 10, f"found only {len(modules)} modules under {GATEWAY}"
    return modules


def test_no_posix_only_calls_outside_platform_module() -> None:
    problems: list[str] = []
    for path in gateway_modules():
        problems.extend(posix_only_uses(path.read_text(encoding="utf-8"), str(path.relative_to(GATEWAY.parent))))
    assert not problems, "POSIX-only code outside gateway/platform.py:\n" + "\n".join(problems)


def test_lint_names_file_and_line_of_each_violation() -> None:
    snippet = "\n".join(
        [
            "import os, fcntl",
            "import signal",
            "from socket import SO_REUSEPORT",
            "import resource.sub",
            "def f(loop, sock, socket):",
            "    os.fork()",
            "    loop.add_signal_handler(signal.SIGHUP, f)",
            "    self_loop = loop",
            "    self_loop.remove_signal_handler(signal.SIGUSR1)",
            "    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)",
            "    os.killpg(os.getpgid(0), signal.SIGQUIT)",
            "    return os.getuid() + os.geteuid(), os.setsid(), signal.SIGUSR2",
            "from pwd import getpwnam",
            "import grp as groups, termios, uvloop",
            "loop.create_server(f, reuse_address=True)",
        ]
    )
    problems = posix_only_uses(snippet, "gateway/bad.py")
    lines = sorted(int(problem.split(":")[1]) for problem in problems)
    assert lines == [1, 3, 4, 6, 7, 7, 9, 9, 10, 11, 11, 12, 12, 12, 12, 13, 14, 14, 14, 15]
    assert "gateway/bad.py:1: import fcntl: POSIX-only module" in problems
    assert "gateway/bad.py:6: os.fork does not exist on Windows" in problems


def test_lint_accepts_portable_code() -> None:
    snippet = (
        "import os, signal, socket, asyncio\n"
        "os.getpid(); os.kill(os.getpid(), signal.SIGTERM); signal.signal(signal.SIGINT, None)\n"
        "socket.SO_REUSEADDR; getattr(signal, 'SIGBREAK', None); asyncio.get_running_loop()\n"
        "from os import path, getpid\n"
        "loop.create_server(f, reuse_address=platform.reuse_address())\n"
    )
    assert posix_only_uses(snippet, "ok.py") == []


# --- signal handling -------------------------------------------------------------------

HandlerFunction = Callable[[int, FrameType | None], None]
# These tests send real signals to this process with os.kill and use SIGHUP: POSIX hosts
# only. On Windows the same code runs inside the Windows tier (tests/windows/native_checks.py).
posix_host = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals to this process")


@pytest.fixture
def sentinel_handlers() -> Iterator[dict[int, list[int]]]:
    """Install recording handlers for SIGINT/SIGTERM/SIGHUP, so a signal that platform fails
    to catch is recorded here instead of killing pytest; the originals come back after."""
    received: dict[int, list[int]] = {signal.SIGINT: [], signal.SIGTERM: [], signal.SIGHUP: []}
    originals = {signum: signal.getsignal(signum) for signum in received}
    for signum, calls in received.items():
        signal.signal(signum, _recorder(calls))
    yield received
    for signum, original in originals.items():
        signal.signal(signum, original)


def _recorder(calls: list[int]) -> HandlerFunction:
    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    return handler


def deliver(signum: int, install: Callable[..., Callable[[], None]], **options: bool) -> tuple[list[int], bool]:
    """Install with ``install(loop, callback)``, send ``signum`` to this process, and run a
    fresh loop until the callback runs there (at most 5 s). Returns what the callback
    received and whether it ran on the loop's own thread, after calling the undo function."""
    loop = asyncio.new_event_loop()
    received: list[int] = []
    on_loop: list[bool] = []

    async def main() -> None:
        arrived = asyncio.Event()

        def callback(*args: int) -> None:
            on_loop.append(asyncio.get_running_loop() is loop)
            received.append(args[0] if args else signum)
            arrived.set()

        undo = install(loop, callback, **options)
        try:
            os.kill(os.getpid(), signum)
            await asyncio.wait_for(arrived.wait(), 5)
        finally:
            undo()

    try:
        loop.run_until_complete(main())
    except TimeoutError:
        pass
    finally:
        loop.close()
    return received, on_loop == [True]


@posix_host
@pytest.mark.parametrize("windows", [True, False], ids=["windows", "posix"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_shutdown_signal_reaches_callback_on_loop(
    sentinel_handlers: dict[int, list[int]], windows: bool, signum: int
) -> None:
    before = {number: signal.getsignal(number) for number in sentinel_handlers}
    received, on_loop = deliver(signum, platform.install_signal_handlers, windows=windows)
    assert received == [signum]
    assert on_loop
    assert sentinel_handlers[signum] == [], "the previous handler saw a signal platform should have taken"
    # The undo function puts back exactly the handlers that were there before.
    assert {number: signal.getsignal(number) for number in sentinel_handlers} == before


@posix_host
def test_windows_path_uses_signal_module_not_loop(sentinel_handlers: dict[int, list[int]]) -> None:
    class NoSignalLoop(asyncio.SelectorEventLoop):
        """Stands in for the Proactor loop, which has no add_signal_handler."""

        def add_signal_handler(self, *args: object) -> None:
            raise NotImplementedError

    loop = NoSignalLoop()
    try:
        undo = platform.install_signal_handlers(loop, lambda signum: None, windows=True)
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(signum)
                assert callable(handler) and handler.__module__ == "gateway.platform"
        finally:
            undo()
    finally:
        loop.close()


def test_windows_shutdown_signals_include_ctrl_break(monkeypatch: pytest.MonkeyPatch) -> None:
    # SIGBREAK (Ctrl+Break) exists only on Windows; give Linux a stand-in number.
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    assert platform.shutdown_signals(windows=True) == [signal.SIGINT, signal.SIGTERM, 21]
    assert platform.shutdown_signals(windows=False) == [signal.SIGINT, signal.SIGTERM]


@posix_host
def test_sighup_reload_on_posix_only(sentinel_handlers: dict[int, list[int]]) -> None:
    before = signal.getsignal(signal.SIGHUP)
    received, on_loop = deliver(signal.SIGHUP, platform.install_reload_signal, windows=False)
    assert received == [signal.SIGHUP] and on_loop
    assert signal.getsignal(signal.SIGHUP) is before
    loop = asyncio.new_event_loop()
    try:
        undo = platform.install_reload_signal(loop, lambda: None, windows=True)
        assert signal.getsignal(signal.SIGHUP) is before, "Windows has no SIGHUP: nothing to install"
        undo()
    finally:
        loop.close()


@posix_host
@pytest.mark.parametrize("windows", [True, False], ids=["windows", "posix"])
def test_outside_main_thread_nothing_is_installed(windows: bool) -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    outcome: list[object] = []

    def worker() -> None:
        loop = asyncio.new_event_loop()
        try:
            undo = platform.install_signal_handlers(loop, lambda signum: None, windows=windows)
            undo_reload = platform.install_reload_signal(loop, lambda: None, windows=windows)
            undo()
            undo_reload()
            outcome.append("ok")
        except Exception as exc:  # reported below: signal.signal raises ValueError off the main thread
            outcome.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert outcome == ["ok"]
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_reuse_port_only_off_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform.reuse_port_available() == hasattr(__import__("socket"), "SO_REUSEPORT")
    monkeypatch.setattr(platform, "IS_WINDOWS", True)
    assert platform.reuse_port_available() is False


def test_reuse_address_only_off_windows() -> None:
    assert platform.reuse_address(windows=False) is True
    assert platform.reuse_address(windows=True) is False


def test_new_event_loop_runs_coroutines() -> None:
    loop = platform.new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()
