"""Django's autoreloader with the roles of its two threads swapped, so asgigw can stop gracefully.

Django's own ``run_with_reloader`` runs the server in a daemon thread ("django-main-thread")
and watches files in the main thread; a change calls ``sys.exit(3)`` there and the server
thread simply dies with the process. asgigw wants the main thread instead: only there can
it install its Ctrl+C/SIGTERM handlers (``platform.install_signal_handlers``) and drain
requests and close WebSockets with 1001 before exiting. So, in the child process:

* the main thread runs the command's ``inner_run`` (system checks, then the server);
* a daemon thread runs Django's reloader (``get_reloader()``: StatReloader or Watchman,
  with the same ``autoreload_started``/``file_changed`` signals and watched files). Its
  ``sys.exit(3)`` on a change only ends that thread; we catch it and ask the server to shut
  down, after which the child exits 3 and the parent starts a new one.

The parent process is Django's restart loop (same ``get_child_arguments`` and
``DJANGO_AUTORELOAD_ENV``), plus signal relaying: SIGTERM sent to the parent is passed on to
the child, which stops gracefully and exits 0; Ctrl+C reaches both processes from the
terminal, so the parent ignores it and waits for the child.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import CommandError, SystemCheckError
from django.utils import autoreload

from gateway import platform

RESTART_EXIT_CODE = 3  # what Django's restart loop takes as "start me again"
POLL_SECONDS = 0.5  # bounded waits, so Ctrl+C is noticed on Windows too

log = logging.getLogger("django.utils.autoreload")


class Restart:
    """A restart requested by the file watcher thread, carried to the main thread."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._lock = threading.Lock()
        self._stop_server: Callable[[], None] | None = None

    def request(self) -> None:
        """Called by the watcher thread: stop the server if one runs, remember the request."""
        with self._lock:
            self.requested.set()
            stop = self._stop_server
        if stop is not None:
            stop()

    @contextmanager
    def stops(self, stop_server: Callable[[], None]) -> Iterator[None]:
        """While the block runs, a restart request calls ``stop_server`` (thread-safe)."""
        with self._lock:
            self._stop_server = stop_server
            already = self.requested.is_set()
        if already:  # a file changed while the server was still starting
            stop_server()
        try:
            yield
        finally:
            with self._lock:
                self._stop_server = None


# The restart channel of this process when it is a reloader child, else None.
current: Restart | None = None


class _MainFunctionState:
    """What Django's reloader asks of "the main thread": is it alive (still working)?

    Django waits for the apps registry only while that thread lives; ours stays alive while
    it waits for a fix, so the watcher needs to know whether ``inner_run`` has failed.
    """

    def __init__(self) -> None:
        self.failed = threading.Event()

    def is_alive(self) -> bool:
        return not self.failed.is_set()


def run_with_reloader(main_function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run ``main_function`` under the autoreloader; exits the process when done."""
    if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
        sys.exit(_run_child(main_function, *args, **kwargs))
    sys.exit(_run_parent())


def _run_parent() -> int:
    environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    arguments = [str(argument) for argument in autoreload.get_child_arguments()]
    child: list[subprocess.Popen[bytes]] = []

    def relay(signum: int, frame: object) -> None:
        # Ctrl+C (and Ctrl+Break) go to every process of the terminal or console, the child
        # included; passing them on would make a second stop request, which skips the drain.
        if signum == signal.SIGTERM and child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, relay) for signum in platform.shutdown_signals()}
    try:
        while True:
            child[:] = [subprocess.Popen(arguments, env=environ, close_fds=False)]
            code = child[0].wait()
            if code != RESTART_EXIT_CODE:
                # A child killed by a signal reports -N; shells expect 128 + N.
                return code if code >= 0 else 128 - code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_child(main_function: Callable[..., None], *args: Any, **kwargs: Any) -> int:
    global current
    autoreload.ensure_echo_on()
    restart = current = Restart()
    state = _MainFunctionState()
    reloader = autoreload.get_reloader()
    log.info("Watching for file changes with %s", type(reloader).__name__)
    watcher = threading.Thread(target=_watch, args=(reloader, state, restart), name="asgigw-reloader", daemon=True)
    watcher.start()
    # Until the server installs its own handlers (and after it restores these), SIGTERM
    # ends the child at once, as under Django's reloader.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        return _serve_or_wait(main_function, restart, state, args, kwargs)
    except KeyboardInterrupt:  # Ctrl+C while no server runs (system checks, waiting for a fix)
        return 0
    finally:
        reloader.stop()


def _serve_or_wait(
    main_function: Callable[..., None],
    restart: Restart,
    state: _MainFunctionState,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> int:
    try:
        autoreload.check_errors(main_function)(*args, **kwargs)
    except CommandError as exc:
        if not isinstance(exc, SystemCheckError):
            raise  # a bad address, port or certificate: fixing code will not help
        state.failed.set()
        sys.stderr.write(f"{exc}\n")
        return _wait_for_fix(restart)
    except Exception:
        # The project's code failed (an import, a view module): show it, watch the file
        # that raised (check_errors added it), and start again once it is saved.
        state.failed.set()
        traceback.print_exc()
        return _wait_for_fix(restart)
    return RESTART_EXIT_CODE if restart.requested.is_set() else 0


def _wait_for_fix(restart: Restart) -> int:
    sys.stderr.write("Waiting for a file to change to restart the server.\n")
    sys.stderr.flush()
    while not restart.requested.wait(POLL_SECONDS):
        pass
    return RESTART_EXIT_CODE


def _watch(reloader: Any, state: _MainFunctionState, restart: Restart) -> None:
    try:
        reloader.run(state)
    except SystemExit:  # trigger_reload(): a watched file changed
        restart.request()
    except Exception:
        log.exception("the autoreloader failed; saving a file will not restart the server")
