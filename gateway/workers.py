"""``--workers N``: a supervisor process and N worker processes serving one set of sockets.

The supervisor (the process the operator started) checks the certificates, binds every
address once and starts N workers with the ``spawn`` method (gateway/platform.py says why,
and how the sockets travel). Each worker imports the app itself, runs its own lifespan and
a normal :class:`~gateway.server.Server` on the inherited sockets; the kernel gives each
new connection to whichever worker accepts it first. The supervisor never imports the app.

Supervisor and worker talk over two one-way pipes per worker, never over signals alone,
because Windows cannot deliver SIGTERM to another process gracefully:

- control, supervisor -> worker: ``stop`` (graceful), ``force`` (a second stop signal),
  ``reload`` (SIGHUP: re-read the certificates), ``reopen`` (SIGUSR1: reopen log files). End-of-file means the supervisor is gone,
  however it died: the worker shuts down instead of serving on as an orphan.
- status, worker -> supervisor: ``ready`` once it accepts connections, or
  ``("failed", text)`` when the app cannot be imported, so that text is printed once, not N
  times; ``recycle`` when it has served --max-requests.

Replacing a live worker (--max-requests, SIGUSR2, --reload) never leaves a slot without a
serving process: the new worker starts while the old one keeps accepting, and only when the
new one is ready is the old one told to ``stop`` (drain: requests in flight finish,
WebSockets get 1001). A replacement that fails to start (new code that does not import)
leaves the old worker serving. gateway/worker_restarts.py keeps that bookkeeping.

This module is the supervisor's side; gateway/worker_process.py is the worker's.

A worker that dies after it was ready is replaced after a back-off that doubles up to
RESTART_DELAY_MAX. One that dies before it was ready during the first start stops the
supervisor with the worker's exit code, as one process would have stopped (a failing
lifespan startup or a broken deploy must not restart in a loop); so does a replacement
that fails to start MAX_START_FAILURES times in a row.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.connection
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from gateway import platform
from gateway.access_log import reopen_logs, setup_logging
from gateway.config import BindAddress, Config, ConfigError
from gateway.loader import AppLoadError, split_target
from gateway.logs import report_startup_error
from gateway.server import (
    ListeningSocket,
    StartupError,
    bind_sockets,
    log_serving,
    log_tls_startup,
    prepare_tls,
    start_certificate_manager,
)
from gateway.worker_process import FAILED, FORCE, READY, RECYCLE, RELOAD, REOPEN, STOP, AppSpec, worker_main
from gateway.worker_restarts import Replacements

if TYPE_CHECKING:
    from gateway.metrics_export import SupervisorMetrics

__all__ = ["AppSpec", "Supervisor", "run_workers"]

log = logging.getLogger("gateway.error")

# Back-off before replacing a worker that died: doubled per death in a row, capped.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
# A worker that served this long before dying resets the back-off (it was not a crash loop).
STABLE_SECONDS = 10.0
# Replacements that die before they are ready, in a row, before the supervisor gives up.
MAX_START_FAILURES = 5
# Beyond --graceful-timeout: time for the lifespan shutdown before a worker is killed.
STOP_MARGIN = 10.0
# After a second stop signal: time for workers to exit before they are killed.
FORCE_MARGIN = 5.0


@dataclass(slots=True)
class Worker:
    """One worker process as the supervisor sees it; ``slot`` survives replacements."""

    slot: int
    pid: int
    process: BaseProcess
    control: Connection
    status: Connection
    ready_at: float | None = None
    failure: str | None = None
    # The worker this one replaces; it serves on until this one is ready (Replacements).
    predecessor: Worker | None = None


class Supervisor:
    """Binds once, starts ``config.workers`` workers, replaces dead ones, stops them all.

    ``windows`` picks the platform's signal handling (tests force the Windows choice on
    Linux); workers are told to stop over their pipe on every platform.
    """

    def __init__(self, spec: AppSpec, config: Config, *, windows: bool = platform.IS_WINDOWS) -> None:
        self.spec = spec
        self.config = config
        self.windows = windows
        self.sockets: list[ListeningSocket] = []
        self.workers: dict[int, Worker] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restarts: dict[int, asyncio.TimerHandle] = {}
        self._deaths: dict[int, int] = {}
        self._start_failures: dict[int, int] = {}
        self._announce: Callable[[], None] = lambda: None
        self._announced = False
        self.stopping = False
        self._signals = 0
        self._exit_code: int | None = None
        self._clean = True
        self._last_failure: str | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._done = asyncio.Event()
        self.replacements = Replacements(self)
        self.metrics: SupervisorMetrics | None = None

    async def run(self) -> int:
        """Serve until stopped; the exit code: 0 when every worker stopped cleanly."""
        loop = self._loop = asyncio.get_running_loop()
        # Checked here, once, before any worker exists: a bad --cert fails in one line.
        config, _, dev_certificate = prepare_tls(self.config)
        self.sockets = bind_sockets(config)
        addresses = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock, spec in self.sockets if not spec.redirect
        ]
        redirects = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock, spec in self.sockets if spec.redirect
        ]

        def announce() -> None:
            log_tls_startup(config, dev_certificate)
            log_serving(config, addresses, workers=self.config.workers, redirects=redirects)

        self._announce = announce
        restore_signals = platform.install_signal_handlers(loop, self._on_signal, windows=self.windows)
        # As for one process: SIGHUP means "reload the certificates" only when there are some.
        restore_reload = (
            platform.install_reload_signal(loop, self._on_reload_signal, windows=self.windows) if config.tls else None
        )
        restore_reopen = platform.install_reopen_signal(loop, self._on_reopen_signal, windows=self.windows)
        restore_restart = platform.install_restart_signal(loop, self._on_restart_signal, windows=self.windows)
        # The supervisor alone talks to the ACME CA; its new certificates reach the workers
        # as a reload order (they read the same files).
        certificates = start_certificate_manager(config, self._reload_workers)
        # Before the first worker starts: they inherit the shared metrics folder.
        self.metrics = _supervisor_metrics(config)
        watcher = self.replacements.watch_files(self.spec, config) if config.reload else None
        try:
            for slot in range(self.config.workers):
                self.start(slot)
            await self._done.wait()
        finally:
            if self.metrics is not None:
                self.metrics.close()
            if certificates is not None:
                await certificates.stop()
            if watcher is not None:
                watcher.stop()
            restore_signals()
            restore_reopen()
            restore_restart()
            if restore_reload is not None:
                restore_reload()
            self._close_sockets()
            for timer in [*self._restarts.values(), self._kill_timer]:
                if timer is not None:
                    timer.cancel()
            self.replacements.cancel_timers()
            self._reap_all()
        if self._exit_code is not None:
            return self._exit_code
        return 0 if self._clean else 1

    # -- starting and watching workers ------------------------------------------------

    def start(self, slot: int, predecessor: Worker | None = None) -> None:
        context = platform.worker_context()
        control_reader, control_writer = context.Pipe(duplex=False)
        status_reader, status_writer = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main,
            args=(self.spec, self.config, self.sockets, control_reader, status_writer, self.windows),
            name=f"asgigw-worker-{slot}",
        )
        try:
            process.start()
        finally:
            # The worker holds the other ends now; closing ours lets each side see EOF
            # when the other dies.
            control_reader.close()
            status_writer.close()
        worker = Worker(slot, process.pid or 0, process, control_writer, status_reader, predecessor=predecessor)
        self.workers[slot] = worker
        threading.Thread(target=self._watch, args=(worker,), name=f"watch-{worker.pid}", daemon=True).start()
        log.debug("started worker %d (slot %d)", worker.pid, slot)

    def _watch(self, worker: Worker) -> None:
        """Thread: pass the worker's messages to the loop until it exits, then report the exit."""
        reading = True
        while True:
            waiting: list[Any] = [worker.status, worker.process.sentinel] if reading else [worker.process.sentinel]
            ready = multiprocessing.connection.wait(waiting)
            if reading and worker.status in ready:
                try:
                    message = worker.status.recv()
                except (EOFError, OSError):
                    reading = False
                else:
                    self.post(self._on_message, worker, message)
                continue
            break
        worker.process.join()
        self.post(self._on_exit, worker)

    def post(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop has closed: the supervisor is past caring
            pass

    def _on_message(self, worker: Worker, message: Any) -> None:
        if message == READY:
            worker.ready_at = time.monotonic()
            self._start_failures[worker.slot] = 0
            if worker.predecessor is not None:
                self.replacements.ready(worker)
            elif self._announced:
                log.info("worker %d replaced the one in slot %d", worker.pid, worker.slot)
            elif not self.stopping and all(w.ready_at is not None for w in self.workers.values()):
                if len(self.workers) == self.config.workers:
                    self._announced = True
                    self._announce()
        elif isinstance(message, tuple) and message[:1] == (FAILED,):
            worker.failure = str(message[1])
        elif message == RECYCLE and not self.stopping:
            self.replacements.replace(worker.slot, "it served --max-requests")

    def _on_exit(self, worker: Worker) -> None:
        code = worker.process.exitcode
        worker.process.close()
        worker.control.close()
        worker.status.close()
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        how = platform.describe_exit(code, windows=self.windows)
        if self.metrics is not None:
            self.metrics.worker_exited(worker.pid)
        if self.replacements.exited(worker, code, how):
            self._check_done()
        elif self.stopping:
            if code != 0:
                self._clean = False
                if worker.ready_at is None and self._exit_code is not None:
                    # Stopping because a worker could not start: the others usually fail
                    # the same way; say so only if their reason differs.
                    self.print_failure(worker)
                else:
                    log.warning("worker %d ended with %s during shutdown", worker.pid, how)
            self._check_done()
        elif worker.ready_at is None:
            self._start_failed(worker, code or 1, how)
        else:
            if time.monotonic() - worker.ready_at >= STABLE_SECONDS:
                self._deaths[worker.slot] = 0
            delay = self._restart_delay(worker.slot)
            log.warning("worker %d exited unexpectedly (%s); starting a new one in %.1fs", worker.pid, how, delay)
            self._schedule_restart(worker.slot, delay)

    def print_failure(self, worker: Worker) -> None:
        if worker.failure and worker.failure != self._last_failure:
            # The worker's own words (an import error), printed once for all N workers.
            sys.stderr.write(worker.failure)
            sys.stderr.flush()
            self._last_failure = worker.failure

    def _start_failed(self, worker: Worker, code: int, how: str) -> None:
        self.print_failure(worker)
        if self.config.reload:
            # Under --reload the fix is a save away: keep the sockets, wait for the next change.
            log.error("worker %d failed to start (%s); waiting for a file to change", worker.pid, how)
            return
        failures = self._start_failures[worker.slot] = self._start_failures.get(worker.slot, 0) + 1
        if not self._announced or failures >= MAX_START_FAILURES:
            if self._exit_code is None:
                self._exit_code = code if code > 0 else 1
                if not worker.failure:
                    times = f" {failures} times in a row" if failures > 1 else ""
                    log.error("worker %d failed to start%s (%s); stopping", worker.pid, times, how)
            self._begin_stop()
            return
        delay = self._restart_delay(worker.slot)
        log.warning("worker %d failed to start (%s); trying again in %.1fs", worker.pid, how, delay)
        self._schedule_restart(worker.slot, delay)

    def _restart_delay(self, slot: int) -> float:
        deaths = self._deaths.get(slot, 0)
        self._deaths[slot] = deaths + 1
        return float(min(RESTART_DELAY * 2**deaths, RESTART_DELAY_MAX))

    def _schedule_restart(self, slot: int, delay: float) -> None:
        assert self._loop is not None
        self._restarts[slot] = self._loop.call_later(delay, self._restart, slot)

    def _restart(self, slot: int) -> None:
        self._restarts.pop(slot, None)
        if self.stopping:
            return
        if self.metrics is not None:
            self.metrics.counts.worker_restarts += 1
        try:
            self.start(slot)
        except OSError as exc:  # out of processes or file descriptors: try again later
            delay = self._restart_delay(slot)
            log.error("cannot start a worker: %s; trying again in %.1fs", exc, delay)
            self._schedule_restart(slot, delay)

    # -- stopping ----------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: stopping %d workers (waiting up to %gs for requests in flight)",
                signal.Signals(signum).name,
                len(self.workers),
                self.config.graceful_timeout,
            )
            self._begin_stop()
        else:
            log.warning("second stop request: stopping the workers now")
            self._force()

    def _on_restart_signal(self) -> None:
        self.replacements.restart_all("SIGUSR2")

    def _on_reload_signal(self) -> None:
        self._reload_workers("SIGHUP")

    def _reload_workers(self, reason: str) -> None:
        log.info("%s: asking %d workers to reload the TLS certificates", reason, len(self.workers))
        for worker in self.workers.values():
            self.send(worker, RELOAD)

    def _on_reopen_signal(self) -> None:
        reopen_logs("SIGUSR1")
        for worker in self.workers.values():
            self.send(worker, REOPEN)

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        # Our copies of the listening sockets would keep the port accepting into the
        # backlog after every worker closed its own; close them so new clients are refused.
        self._close_sockets()
        for timer in self._restarts.values():
            timer.cancel()
        self._restarts.clear()
        for worker in self.all_workers():
            self.send(worker, STOP)
        self._kill_later(self.config.graceful_timeout + STOP_MARGIN)
        self._check_done()

    def all_workers(self) -> list[Worker]:
        """Serving workers and those draining after a replacement."""
        return [*self.workers.values(), *self.replacements.retiring.values()]

    def _force(self) -> None:
        self._begin_stop()
        for worker in self.all_workers():
            self.send(worker, FORCE)
        self._kill_later(FORCE_MARGIN)

    def _kill_later(self, delay: float) -> None:
        assert self._loop is not None
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._kill_timer = self._loop.call_later(delay, self._kill_remaining, delay)

    def _kill_remaining(self, waited: float) -> None:
        for worker in self.all_workers():
            log.warning("worker %d still running %gs after the stop request; killing it", worker.pid, waited)
            self._clean = False
            worker.process.kill()

    def send(self, worker: Worker, message: str) -> None:
        try:
            worker.control.send(message)
        except (OSError, ValueError):  # the worker has exited (or is exiting): nothing to tell
            pass

    def _check_done(self) -> None:
        if self.stopping and not self.all_workers():
            self._done.set()

    def _close_sockets(self) -> None:
        for sock, _ in self.sockets:
            sock.close()

    def _reap_all(self) -> None:
        """Leave no worker behind, whatever ended ``run`` (normally none is left)."""
        for worker in self.all_workers():
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(5)


def _supervisor_metrics(config: Config) -> SupervisorMetrics | None:
    if config.metrics_bind is None:
        return None
    from gateway import metrics_export

    try:
        return metrics_export.SupervisorMetrics(BindAddress.parse(config.metrics_bind))
    except metrics_export.MetricsUnavailable as exc:
        raise StartupError(str(exc)) from None


def run_workers(spec: AppSpec, config: Config, *, windows: bool = platform.IS_WINDOWS) -> int:
    """Blocking: supervise ``config.workers`` worker processes serving ``spec``; the exit code."""
    try:
        setup_logging(config, role="supervisor")
    except ConfigError as exc:
        report_startup_error(str(exc))
        return 2
    try:
        split_target(spec.target)
    except AppLoadError as exc:
        report_startup_error(str(exc))
        return 2
    try:
        loop = platform.new_event_loop(config.loop)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        return loop.run_until_complete(Supervisor(spec, config, windows=windows).run())
    except (ConfigError, StartupError) as exc:
        report_startup_error(str(exc))
        return 2
    finally:
        loop.close()
