"""Checks that run *inside* the Windows CPython (under Wine), not under pytest.

``tests/windows/test_windows_tier.py`` runs ``python.sh DIR tests/windows/native_checks.py``
and expects exit status 0 and the final ``native checks passed`` line. Each check prints one
``ok`` line so a failure shows how far it got. Only the standard library and gateway/ are
used: the Windows Python has the runtime dependencies, not pytest.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any

from gateway import platform
from gateway.config import Config
from gateway.server import Server


def check(condition: bool, what: str) -> None:
    """Fail with ``what`` unless ``condition``; print one ``ok`` line otherwise."""
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


async def platform_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the platform and loop class that served the request."""
    if scope["type"] != "http":
        return
    body = f"{sys.platform} {type(asyncio.get_running_loop()).__name__}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_platform_facts() -> None:
    """What gateway.platform reports on Windows."""
    check(sys.platform == "win32" and platform.IS_WINDOWS, "sys.platform is win32 and platform.IS_WINDOWS is true")
    check(signal.SIGBREAK in platform.shutdown_signals(), "shutdown_signals() includes SIGBREAK (Ctrl+Break)")
    check(not platform.reuse_port_available(), "reuse_port_available() is false")
    check(not hasattr(socket, "SO_REUSEPORT"), "socket has no SO_REUSEPORT")
    loop = platform.new_event_loop()
    try:
        check(isinstance(loop, asyncio.ProactorEventLoop), "new_event_loop() is the Proactor loop")
    finally:
        loop.close()


def check_loop_fallback() -> None:
    """--loop auto: winloop when it runs, else the Proactor loop with an INFO line."""
    import logging
    import types

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("gateway.error")
    handler, level = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    real = sys.modules.get("winloop")
    try:
        loop = platform.new_event_loop("auto")
        try:
            name = platform.describe_loop(loop)
            check(
                name == "winloop" or isinstance(loop, asyncio.ProactorEventLoop),
                f"new_event_loop('auto') is winloop or the Proactor loop (got {name})",
            )
        finally:
            loop.close()

        def cannot_start() -> asyncio.AbstractEventLoop:
            raise OSError("winloop cannot start here")

        broken = types.ModuleType("winloop")
        broken.new_event_loop = cannot_start  # type: ignore[attr-defined]
        sys.modules["winloop"] = broken
        loop = platform.new_event_loop("auto")
        try:
            check(
                isinstance(loop, asyncio.ProactorEventLoop), "a winloop that cannot start: auto takes the Proactor loop"
            )
        finally:
            loop.close()
        check(any("winloop is installed but cannot start" in m for m in messages), "and says so in an INFO line")
    finally:
        if real is None:
            sys.modules.pop("winloop", None)
        else:
            sys.modules["winloop"] = real
        logger.removeHandler(handler)
        logger.setLevel(level)


def check_signal_fallback() -> None:
    """install_signal_handlers uses signal.signal (the Proactor loop has no add_signal_handler)."""
    loop = platform.new_event_loop()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGBREAK)
    before = {signum: signal.getsignal(signum) for signum in signals}
    try:
        try:
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            check(False, "the Proactor loop refuses add_signal_handler")
        except NotImplementedError:
            check(True, "the Proactor loop refuses add_signal_handler")
        received: list[int] = []
        undo = platform.install_signal_handlers(loop, received.append)
        handlers = [signal.getsignal(signum) for signum in signals]
        check(
            all(getattr(handler, "__module__", "") == "gateway.platform" for handler in handlers),
            "install_signal_handlers set signal.signal handlers for SIGINT, SIGTERM, SIGBREAK",
        )
        # raise() runs the C runtime's handler directly: no console event needed, so this
        # works under Wine, which cannot deliver Ctrl+C / Ctrl+Break to a console process.
        signal.raise_signal(signal.SIGTERM)
        loop.run_until_complete(asyncio.sleep(0.1))
        check(received == [signal.SIGTERM], f"SIGTERM reached the callback on the loop (got {received})")
        undo()
        check({signum: signal.getsignal(signum) for signum in signals} == before, "undo restored the old handlers")
    finally:
        loop.close()


async def serve_and_stop_on_ctrl_break() -> None:
    """A real Server on the Proactor loop: one request, then SIGBREAK stops it gracefully."""
    server = Server(platform_app, Config(port=0, access_log=False, log_level="warning"))
    serving = asyncio.ensure_future(server.serve())
    started = asyncio.ensure_future(server.started.wait())
    await asyncio.wait({serving, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    check(server.started.is_set(), "the server started on the Proactor loop")
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    check(response.startswith(b"HTTP/1.1 200 "), "the server answered 200")
    check(response.endswith(b"win32 ProactorEventLoop"), "the app ran on the Proactor loop")
    signal.raise_signal(signal.SIGBREAK)
    exit_code = await asyncio.wait_for(serving, 15)
    check(exit_code == 0, f"SIGBREAK shut the server down gracefully (exit code {exit_code})")


def main() -> None:
    """Run every check; exit non-zero at the first failure."""
    original = signal.getsignal(signal.SIGINT)
    check_platform_facts()
    check_signal_fallback()
    check_loop_fallback()
    loop = platform.new_event_loop()
    try:
        loop.run_until_complete(serve_and_stop_on_ctrl_break())
    finally:
        loop.close()
    check(signal.getsignal(signal.SIGINT) is original, "the server put the SIGINT handler back")
    print("native checks passed", flush=True)


if __name__ == "__main__":
    main()
