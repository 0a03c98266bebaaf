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
import random
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway import platform
from gateway.access_log import reopen_logs, setup_logging
from gateway.config import Config, ConfigError
from gateway.loader import AppLoadError, load_app
from gateway.server import ListeningSocket, Server, StartupError

log = logging.getLogger("gateway.error")

# Control messages (supervisor -> worker) and status messages (worker -> supervisor).
STOP, FORCE, RELOAD, REOPEN, READY, FAILED = "stop", "force", "reload", "reopen", "ready", "failed"
# Status: this worker reached --max-requests; it keeps serving until its replacement is
# ready and the supervisor sends STOP.
RECYCLE = "recycle"
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


class StopRequests:
    """Every way a worker is told to stop, counted as one graceful stop and one forced stop.

    A Ctrl+C in a terminal or console reaches every process of it, so a worker gets the
    signal itself and the supervisor's ``stop`` over the pipe, in either order; that is one
    request. A second signal, or the supervisor's ``force`` (its own second signal), ends the
    graceful shutdown. Requests that come before the Server exists are kept for it.
    """

    def __init__(self) -> None:
        self.server: Server | None = None
        self.signals = 0
        self.stop = False
        self.force = False
        self.reason = ""

    def on_signal(self, signum: int) -> None:
        """A shutdown signal sent to this worker itself."""
        self.signals += 1
        self._request(force=self.signals > 1, reason="")

    def on_command(self, message: str) -> None:
        """A message from the supervisor (or SUPERVISOR_GONE)."""
        if message == STOP:
            self._request(force=False, reason="stop requested by the supervisor")
        elif message == FORCE:
            self._request(force=True, reason="stop requested by the supervisor")
        elif message == RELOAD and self.server is not None:
            self.server.reload_certificates("SIGHUP, passed on by the supervisor")
        elif message == REOPEN:
            reopen_logs("SIGUSR1, passed on by the supervisor")
        elif message == SUPERVISOR_GONE:
            self._request(force=False, reason="the supervisor has gone away (its pipe closed); shutting down")
            # Nobody is left to send the second signal that ends a hanging shutdown, or to
            # kill this process: bound the wait here, as the supervisor would have.
            delay = (self.server.config.graceful_timeout if self.server else 0.0) + ORPHAN_MARGIN
            asyncio.get_running_loop().call_later(delay, self._forced_by_orphanhood)

    def attach(self, server: Server) -> None:
        """Apply the requests made so far to ``server``, and the later ones as they come."""
        self.server = server
        self._apply()

    def _forced_by_orphanhood(self) -> None:
        if self.server is not None and not self.server.forced:
            log.warning("still shutting down long after the supervisor left; stopping now")
        self._request(force=True, reason="")

    def _request(self, *, force: bool, reason: str) -> None:
        if not self.stop:
            self.reason = reason
        self.stop = True
        self.force = self.force or force
        self._apply()

    def _apply(self) -> None:
        server = self.server
        if server is None or not self.stop:
            return
        if not server.shutdown_requested:
            if self.reason:
                log.info("%s", self.reason)
            server.request_shutdown()
        while self.force and not server.forced:
            server.request_shutdown()


def worker_main(
    spec: AppSpec,
    config: Config,
    sockets: list[ListeningSocket],
    control: Connection,
    status: Connection,
    windows: bool = platform.IS_WINDOWS,
) -> None:
    """A worker process: import the app, serve the inherited sockets, obey the supervisor.

    ``windows`` is the supervisor's choice of platform behaviour (tests force it on Linux).
    """
    try:
        setup_logging(config, role="worker")
    except ConfigError as exc:
        _report(status, (FAILED, f"asgigw: error: {exc}\n"))
        sys.exit(2)
    # Each worker builds its own loop (--loop); the supervisor's choice already started once.
    loop = platform.new_event_loop(config.loop)
    stops = StopRequests()
    # Installed before the app is imported: a Ctrl+C meanwhile is kept for later, not a
    # KeyboardInterrupt in the middle of the import.
    restore_signals = platform.install_signal_handlers(loop, stops.on_signal, windows=windows)
    try:
        code = _load_and_serve(loop, spec, config, sockets, control, status, stops, windows)
    finally:
        restore_signals()
        loop.close()
    sys.exit(code)


def _load_and_serve(
    loop: asyncio.AbstractEventLoop,
    spec: AppSpec,
    config: Config,
    sockets: list[ListeningSocket],
    control: Connection,
    status: Connection,
    stops: StopRequests,
    windows: bool,
) -> int:
    try:
        app = load_app(spec.target, factory=spec.factory, app_dir=spec.app_dir, interface=config.interface)
    except AppLoadError as exc:
        _report(status, (FAILED, f"asgigw: error: {exc}\n"))
        return 2
    except Exception as exc:  # the app's module raised while importing: its traceback matters
        summary = f"asgigw: error: error importing {spec.target!r}: {type(exc).__name__}: {exc}\n"
        _report(status, (FAILED, traceback.format_exc() + summary))
        return 2
    try:
        return loop.run_until_complete(_serve(app, config, sockets, control, status, stops, windows))
    except (ConfigError, StartupError) as exc:
        log.error("%s", exc)
        return 2


async def _serve(
    app: Any,
    config: Config,
    sockets: list[ListeningSocket],
    control: Connection,
    status: Connection,
    stops: StopRequests,
    windows: bool,
) -> int:
    loop = asyncio.get_running_loop()
    accept_in_thread = platform.accept_shared_in_thread(windows)
    server = Server(app, config, sockets=sockets, announce=False, accept_in_thread=accept_in_thread, supervised=True)
    stops.attach(server)
    if config.max_requests:
        _count_towards_recycling(server, config, status)
    threading.Thread(target=_read_control, args=(control, loop, stops.on_command), name="control", daemon=True).start()
    # A terminal hang-up reaches the workers too; with TLS it reloads, as in one process.
    restore_reload = None
    if config.tls:
        restore_reload = platform.install_reload_signal(
            loop, lambda: server.reload_certificates("SIGHUP"), windows=windows
        )

    async def report_ready() -> None:
        await server.started.wait()
        log.info("worker ready, accepting connections%s", " (accept thread)" if accept_in_thread else "")
        _report(status, READY)

    # A SIGUSR1 sent to the whole process group reaches the workers too (its default
    # action would end them); the supervisor also passes its own on as REOPEN.
    restore_reopen = platform.install_reopen_signal(loop, lambda: reopen_logs("SIGUSR1"), windows=windows)
    ready = loop.create_task(report_ready())
    try:
        # The worker handles its signals itself (StopRequests), not the Server.
        return await server.serve(handle_signals=False)
    finally:
        ready.cancel()
        restore_reopen()
        if restore_reload is not None:
            restore_reload()


def _count_towards_recycling(server: Server, config: Config, status: Connection) -> None:
    """Ask the supervisor for a replacement once this worker has started its own limit.

    Each worker draws its own jitter, so workers started together are not replaced together.
    """
    limit = config.max_requests + random.randint(0, config.max_requests_jitter)

    def reached() -> None:
        log.info("served %d requests (--max-requests): asking for a replacement", limit)
        _report(status, RECYCLE)

    server.context.request_limit = limit
    server.context.on_request_limit = reached


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
