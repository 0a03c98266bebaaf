"""``--reload``: a thread that watches folders and reports changed files to the supervisor.

Two backends, chosen at start-up: watchfiles (the ``reload`` extra: OS notifications, with
its own debouncing) when it is importable, else a pure-Python poller that compares file
modification times once a second. Both apply the same include/exclude globs, matched
against file and folder names (``*.py``; ``__pycache__``), so the choice changes how fast a
change is seen, never which changes count.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

log = logging.getLogger("gateway.error")

DEFAULT_INCLUDES = ("*.py",)
# Editors' swap files, caches, version control and virtual environments.
DEFAULT_EXCLUDES = (".*", "*~", "__pycache__", "*.pyc", "*.pyo", "venv", "node_modules", "*.egg-info")
POLL_INTERVAL = 1.0


class ChangeFilter:
    """Which paths count: a name matching an include, under no folder matching an exclude."""

    def __init__(self, includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        self.includes = tuple(includes) or DEFAULT_INCLUDES
        self.excludes = (*DEFAULT_EXCLUDES, *excludes)

    def excluded(self, name: str) -> bool:
        """True for a file or folder name that an exclude glob matches."""
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.excludes)

    def matches(self, relative_path: str) -> bool:
        """Whether a path, relative to the watched folder it is in, counts as a change.

        Relative, so that a project kept under a folder such as ``~/.projects`` is not
        excluded by ``.*`` as a whole.
        """
        parts = Path(relative_path).parts
        if not parts or any(self.excluded(part) for part in parts[:-1]):
            return False
        name = parts[-1]
        if not any(fnmatch.fnmatch(name, pattern) for pattern in self.includes):
            return False
        # An explicit include wins over the default excludes (--reload-include '.env').
        return not self.excluded(name) or any(name == pattern for pattern in self.includes)


def watchfiles_available() -> bool:
    """True when the ``reload`` extra's watchfiles can be imported."""
    return importlib.util.find_spec("watchfiles") is not None


class FileWatcher:
    """Calls ``on_change(paths)`` from its thread for every batch of relevant changes."""

    def __init__(
        self,
        folders: Sequence[str],
        change_filter: ChangeFilter,
        on_change: Callable[[list[str]], None],
        *,
        backend: str = "auto",
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.folders = [os.path.abspath(folder) for folder in folders]
        self.filter = change_filter
        self.on_change = on_change
        self.backend = ("watchfiles" if watchfiles_available() else "poll") if backend == "auto" else backend
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The poller's first snapshot is taken in start(), so that a change made right after
        # start() returns is seen (watchfiles starts watching in its thread, see _watch_notify).
        self._snapshot: dict[str, tuple[int, int]] = {}
        self._watching = threading.Event()

    def start(self) -> None:
        """Start watching; returns once changes made from now on will be seen."""
        if self.backend == "poll":
            self._snapshot = self._scan()
            self._watching.set()
        target = self._watch_notify if self.backend == "watchfiles" else self._watch_poll
        self._thread = threading.Thread(target=target, name="asgigw-reload", daemon=True)
        self._thread.start()
        self._watching.wait(5.0)

    def stop(self) -> None:
        """Stop the thread (within about a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _report(self, paths: Iterable[str]) -> None:
        changed = sorted(set(paths))
        if changed:
            try:
                self.on_change(changed)
            except Exception:  # the supervisor's callback must not kill the watcher
                log.exception("reload: handling a change failed")

    def _watch_notify(self) -> None:
        import watchfiles

        def relevant(change: object, path: str) -> bool:
            return self._relevant(path)

        try:
            # Notifications are set up before the first yield; give them a moment, so that
            # start()'s promise ("changes from now on are seen") holds.
            batches = watchfiles.watch(*self.folders, watch_filter=relevant, stop_event=self._stop, rust_timeout=500)
            threading.Timer(0.3, self._watching.set).start()
            for batch in batches:
                self._report(path for _, path in batch)
        except Exception:
            log.exception("reload: watchfiles failed; saving a file will not restart the workers")
        finally:
            self._watching.set()

    def _relevant(self, path: str) -> bool:
        for folder in self.folders:
            if path == folder or path.startswith(folder + os.sep):
                return self.filter.matches(os.path.relpath(path, folder))
        return False

    def _watch_poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            current = self._scan()
            previous, self._snapshot = self._snapshot, current
            changed = [path for path, stamp in current.items() if previous.get(path) != stamp]
            changed += [path for path in previous if path not in current]
            self._report(changed)

    def _scan(self) -> dict[str, tuple[int, int]]:
        stamps: dict[str, tuple[int, int]] = {}
        for folder in self.folders:
            for root, dirs, files in os.walk(folder):
                dirs[:] = [name for name in dirs if not self.filter.excluded(name)]
                for name in files:
                    path = os.path.join(root, name)
                    if not self.filter.matches(os.path.relpath(path, folder)):
                        continue
                    try:
                        info = os.stat(path)
                    except OSError:  # removed while we looked
                        continue
                    stamps[path] = (info.st_mtime_ns, info.st_size)
        return stamps
