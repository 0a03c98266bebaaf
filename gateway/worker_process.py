"""The worker side of ``--workers N``: one process started by the supervisor (gateway/workers.py).

It imports the app itself, then runs a normal :class:`~gateway.server.Server` on the
listening sockets the supervisor bound, with its own lifespan. Orders come over the control
pipe, so stopping works the same on Windows, where a graceful SIGTERM to another process does
not exist; end-of-file on that pipe means the supervisor died, and the worker shuts down
instead of serving on as an orphan.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway import platform
from gateway.config import Config, ConfigError
from gateway.loader import AppLoadError, load_app
from gateway.logs import configure_logging
from gateway.server import Server, StartupError

log = logging.getLogger("gateway.error")

# Control messages (supervisor -> worker) and status messages (worker -> supervisor).
STOP, FORCE, RELOAD, READY, FAILED = "stop", "force", "reload", "ready", "failed"
# Not sent by anyone: what the control reader reports when the pipe reaches end-of-file.
SUPERVISOR_GONE = "supervisor-gone"
# Beyond --graceful-timeout: how long an orphaned worker's shutdown may take before it is
# forced (the supervisor's STOP_MARGIN, which would have killed it).
ORPHAN_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What each worker imports: ``target`` is ``module:attr`` (see gateway.loader.load_app)."""

    target: str
    factory: bool = False
    app_dir: str | None = "."


class _EarlySignals:
    """Shutdown signals that arrive before the Server has installed its own handlers.

    A Ctrl+C reaches every process of the console or terminal; the supervisor then tells
    the workers over the pipe. Until the Server takes over, a signal is remembered (not
    ignored: SIG_IGN would be inherited by programs the app starts) and replayed.
    """

    def __init__(self) -> None:
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: list[int] = []
        for signum in platform.shutdown_signals():
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.server is None or self.loop is None:
            self.pending.append(signum)
            return
        try:
            self.loop.call_soon_threadsafe(self.server.request_shutdown, signum)
        except RuntimeError:  # the loop has closed: the worker is exiting already
            pass

    def attach(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server, self.loop = server, loop
        for signum in self.pending:
            server.request_shutdown(signum)


def worker_main(
    spec: AppSpec,
    config: Config,
    sockets: list[socket.socket],
    control: Connection,
    status: Connection,
    windows: bool = platform.IS_WINDOWS,
) -> None:
    """A worker process: import the app, serve the inherited sockets, obey the supervisor.

    ``windows`` is the supervisor's choice of platform behaviour (tests force it on Linux).
    """
    early = _EarlySignals()
    configure_logging(config.log_level, config.access_log, role="worker")
    try:
        app = load_app(spec.target, factory=spec.factory, app_dir=spec.app_dir)
    except AppLoadError as exc:
        _report(status, (FAILED, f"asgigw: error: {exc}\n"))
        sys.exit(2)
    except Exception as exc:  # the app's module raised while importing: its traceback matters
        summary = f"asgigw: error: error importing {spec.target!r}: {type(exc).__name__}: {exc}\n"
        _report(status, (FAILED, traceback.format_exc() + summary))
        sys.exit(2)
    loop = platform.new_event_loop()
    try:
        code = loop.run_until_complete(_serve(app, config, sockets, control, status, early, windows))
    except (ConfigError, StartupError) as exc:
        log.error("%s", exc)
        code = 2
    finally:
        loop.close()
    sys.exit(code)


async def _serve(
    app: Any,
    config: Config,
    sockets: list[socket.socket],
    control: Connection,
    status: Connection,
    early: _EarlySignals,
    windows: bool,
) -> int:
    loop = asyncio.get_running_loop()
    accept_in_thread = platform.accept_shared_in_thread(windows)
    server = Server(app, config, sockets=sockets, announce=False, accept_in_thread=accept_in_thread)
    early.attach(server, loop)

    def on_command(message: str) -> None:
        _obey(server, message)

    threading.Thread(target=_read_control, args=(control, loop, on_command), name="control", daemon=True).start()

    async def report_ready() -> None:
        await server.started.wait()
        log.info("worker ready, accepting connections%s", " (accept thread)" if accept_in_thread else "")
        _report(status, READY)

    ready = loop.create_task(report_ready())
    try:
        return await server.serve()
    finally:
        ready.cancel()


def _obey(server: Server, message: str) -> None:
    """Act on one message from the supervisor (or on its disappearance)."""
    if message == STOP:
        # The same Ctrl+C may have reached this worker already: that is one stop, not two.
        if not server.shutdown_requested:
            log.info("stop requested by the supervisor")
            server.request_shutdown()
    elif message == FORCE:
        while not server.forced:
            server.request_shutdown()
    elif message == RELOAD:
        server.reload_certificates("SIGHUP, passed on by the supervisor")
    elif message == SUPERVISOR_GONE:
        if not server.shutdown_requested:
            log.warning("the supervisor has gone away (its pipe closed); shutting down")
            server.request_shutdown()
        # Nobody is left to send the second signal that ends a hanging shutdown, or to kill
        # this process: bound the wait here, as the supervisor would have.
        asyncio.get_running_loop().call_later(server.config.graceful_timeout + ORPHAN_MARGIN, _force, server)


def _force(server: Server) -> None:
    log.warning("still shutting down long after the supervisor left; stopping now")
    while not server.forced:
        server.request_shutdown()


def _read_control(control: Connection, loop: asyncio.AbstractEventLoop, on_command: Callable[[str], None]) -> None:
    """Thread: pass each control message to the loop; EOF (or a broken pipe) as SUPERVISOR_GONE.

    A blocking read in a thread works the same on the selector loop and on the Windows
    Proactor loop, which cannot watch a multiprocessing pipe.
    """
    while True:
        try:
            message = str(control.recv())
        except (EOFError, OSError):
            message = SUPERVISOR_GONE
        try:
            loop.call_soon_threadsafe(on_command, message)
        except RuntimeError:  # the loop has closed: this worker is exiting anyway
            return
        if message == SUPERVISOR_GONE:
            return


def _report(status: Connection, message: object) -> None:
    try:
        status.send(message)
    except OSError:  # the supervisor is gone; the control pipe tells the rest
        pass
