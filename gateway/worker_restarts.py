"""Replacing live workers without a gap: --max-requests, SIGUSR2 and --reload.

For each slot the supervisor starts a new worker while the old one keeps serving; the old
one is told to drain only once the new one is ready, so the listening sockets always have
a process accepting. If the new worker cannot start (an import error in new code), the
old one simply serves on. Restart requests that arrive while replacements are still
starting are merged into one more round once those are done, so the last change always
wins and no slot runs two replacements at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.reload_watch import ChangeFilter, FileWatcher
from gateway.worker_process import STOP, AppSpec

if TYPE_CHECKING:
    from gateway.workers import Supervisor, Worker

log = logging.getLogger("gateway.error")

# Beyond --graceful-timeout: how long a drained worker's lifespan shutdown may take.
DRAIN_MARGIN = 10.0


class Replacements:
    """The supervisor's replacements in progress and the old workers draining after them."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        # pid -> old worker that was replaced (or is being replaced) and drains.
        self.retiring: dict[int, Worker] = {}
        self._kill_timers: dict[int, asyncio.TimerHandle] = {}
        self._again: str | None = None

    def in_progress(self) -> bool:
        """True while a new worker is starting in place of a serving one."""
        return any(worker.predecessor is not None for worker in self._supervisor.workers.values())

    def restart_all(self, reason: str) -> None:
        """Replace every worker (and start any slot left empty by a failed start)."""
        supervisor = self._supervisor
        if supervisor.stopping:
            return
        if self.in_progress():
            self._again = reason
            log.info("%s: restart queued until the replacements starting now are ready", reason)
            return
        log.info(
            "%s: restarting %d workers (new ones first, then the old ones drain)", reason, supervisor.config.workers
        )
        for slot in range(supervisor.config.workers):
            if slot in supervisor.workers:
                self.replace(slot, reason)
            else:
                supervisor.start(slot)

    def replace(self, slot: int, reason: str) -> None:
        """Start a new worker for ``slot``; the current one serves until it is ready."""
        supervisor = self._supervisor
        current = supervisor.workers.get(slot)
        if current is None or current.predecessor is not None or current.pid in self.retiring or supervisor.stopping:
            return
        self.retiring[current.pid] = current
        try:
            supervisor.start(slot, predecessor=current)
        except OSError as exc:  # out of processes or descriptors: the current one serves on
            del self.retiring[current.pid]
            supervisor.workers[slot] = current
            log.error("cannot start a replacement for worker %d: %s", current.pid, exc)
            return
        log.info("replacing worker %d in slot %d (%s)", current.pid, slot, reason)

    def ready(self, worker: Worker) -> None:
        """The replacement ``worker`` accepts connections: let its predecessor drain."""
        old = worker.predecessor
        assert old is not None
        worker.predecessor = None
        log.info("worker %d is ready; worker %d drains and stops", worker.pid, old.pid)
        self._drain(old)
        self._next_round()

    def exited(self, worker: Worker, code: int | None, how: str) -> bool:
        """Handle the exit of a draining worker or of a replacement that never got ready.

        Returns False when the exit is none of this module's business.
        """
        supervisor = self._supervisor
        if self.retiring.pop(worker.pid, None) is not None:
            timer = self._kill_timers.pop(worker.pid, None)
            if timer is not None:
                timer.cancel()
            replacement = next((w for w in supervisor.workers.values() if w.predecessor is worker), None)
            if replacement is not None:
                # The old one died while its replacement was still starting: nothing to hand over.
                replacement.predecessor = None
            if code == 0:
                log.info("worker %d has drained and exited", worker.pid)
            else:
                log.warning("worker %d ended with %s while draining", worker.pid, how)
            return True
        old = worker.predecessor
        if old is None or worker.ready_at is not None:
            return False
        # A replacement that never got ready: the old worker keeps its slot and serves on.
        del self.retiring[old.pid]
        supervisor.workers[worker.slot] = old
        supervisor.print_failure(worker)
        log.error("the replacement for worker %d failed to start (%s); worker %d keeps serving", old.pid, how, old.pid)
        self._next_round()
        return True

    def watch_files(self, spec: AppSpec, config: Config) -> FileWatcher:
        """Start --reload's file watcher; each batch of changes restarts the workers."""
        folders = list(config.reload_dirs) or [spec.app_dir or "."]
        change_filter = ChangeFilter(config.reload_includes, config.reload_excludes)
        watcher = FileWatcher(folders, change_filter, lambda paths: self._supervisor.post(self._files_changed, paths))
        watcher.start()
        log.info(
            "reload: watching %s for %s (%s)", ", ".join(folders), ", ".join(change_filter.includes), watcher.backend
        )
        return watcher

    def _files_changed(self, paths: list[str]) -> None:
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        self.restart_all(f"reload: {paths[0]}{more} changed")

    def _drain(self, old: Worker) -> None:
        supervisor = self._supervisor
        supervisor.send(old, STOP)
        loop = asyncio.get_running_loop()
        delay = supervisor.config.graceful_timeout + DRAIN_MARGIN
        self._kill_timers[old.pid] = loop.call_later(delay, self._kill, old, delay)

    def _kill(self, old: Worker, waited: float) -> None:
        self._kill_timers.pop(old.pid, None)
        if old.pid in self.retiring:
            log.warning("worker %d still draining %gs after its replacement was ready; killing it", old.pid, waited)
            old.process.kill()

    def _next_round(self) -> None:
        if self._again is not None and not self.in_progress():
            reason, self._again = self._again, None
            self.restart_all(reason)

    def cancel_timers(self) -> None:
        """At the end of the supervisor's run: no kill timer outlives it."""
        for timer in self._kill_timers.values():
            timer.cancel()
        self._kill_timers.clear()
