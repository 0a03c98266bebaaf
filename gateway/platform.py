"""Every difference between POSIX and Windows lives here.

Windows runs asyncio on the Proactor loop: there is no ``loop.add_signal_handler`` (we use
``signal.signal`` and hop onto the loop with ``call_soon_threadsafe``), no ``fork``, no
``SO_REUSEPORT`` and no uvloop. Callers ask this module instead of testing the platform.
Worker processes (gateway/workers.py) start the same way everywhere; what differs in how
they receive the listening sockets and how they die is described here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from gateway.config import ConfigError, LoopChoice, installed

if TYPE_CHECKING:
    import multiprocessing.context

IS_WINDOWS = sys.platform == "win32"

log = logging.getLogger("gateway.error")

SignalCallback = Callable[[int], None]


def shutdown_signals(windows: bool = IS_WINDOWS) -> list[int]:
    """Signals that ask the server to stop: Ctrl+C, SIGTERM, and Ctrl+Break on Windows."""
    signals: list[int] = [signal.SIGINT, signal.SIGTERM]
    if windows and hasattr(signal, "SIGBREAK"):
        signals.append(signal.SIGBREAK)
    return signals


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop, callback: SignalCallback, *, windows: bool = IS_WINDOWS
) -> Callable[[], None]:
    """Call ``callback(signum)`` on the loop for each shutdown signal; return an undo function.

    Signals can only be handled in the main thread; elsewhere (an embedded server in a
    worker thread) nothing is installed and the embedder stops the server itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signals = shutdown_signals(windows)
    if not windows:
        undo = _loop_handlers_undo(loop, signals)
        for signum in signals:
            loop.add_signal_handler(signum, callback, signum)
        return undo

    def on_signal(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(callback, signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in signals}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def install_reload_signal(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], object], *, windows: bool = IS_WINDOWS
) -> Callable[[], None]:
    """Call ``callback()`` on SIGHUP (POSIX, main thread only); return an undo function.

    Windows has no SIGHUP; there the certificate poller alone notices new files.
    """
    return _install_posix_signal(loop, "SIGHUP", callback, windows)


def install_restart_signal(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], object], *, windows: bool = IS_WINDOWS
) -> Callable[[], None]:
    """Call ``callback()`` on SIGUSR2 (POSIX, main thread only): restart the workers.

    Windows has no SIGUSR2 and no other way to signal a running process gracefully; there
    ``--reload`` with a watched marker file restarts the workers (docs/workers.md).
    """
    return _install_posix_signal(loop, "SIGUSR2", callback, windows)


def _install_posix_signal(
    loop: asyncio.AbstractEventLoop, name: str, callback: Callable[[], object], windows: bool
) -> Callable[[], None]:
    signum = getattr(signal, name, None)
    if windows or signum is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    undo = _loop_handlers_undo(loop, [signum])
    loop.add_signal_handler(signum, callback)
    return undo


def install_reopen_signal(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], object], *, windows: bool = IS_WINDOWS
) -> Callable[[], None]:
    """Call ``callback()`` on SIGUSR1 (POSIX, main thread only): reopen the log files.

    logrotate renames the file and sends SIGUSR1 (``postrotate``). Windows has no SIGUSR1 and
    cannot rename a file another process holds open; there, rotate with --log-config and a
    RotatingFileHandler/TimedRotatingFileHandler (docs/logging.md).
    """
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if windows or sigusr1 is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    undo = _loop_handlers_undo(loop, [sigusr1])
    loop.add_signal_handler(sigusr1, callback)
    return undo


def _loop_handlers_undo(loop: asyncio.AbstractEventLoop, signals: list[int]) -> Callable[[], None]:
    """An undo function for ``loop.add_signal_handler`` that restores the previous handlers."""
    # remove_signal_handler resets to SIG_DFL (default_int_handler for SIGINT); a handler
    # the embedding program had set before serve() must come back instead.
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def remove() -> None:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            if handler is not None:
                signal.signal(signum, handler)

    return remove


def reuse_address(windows: bool = IS_WINDOWS) -> bool:
    """Whether listeners set SO_REUSEADDR: on POSIX, yes; on Windows, never.

    POSIX: a restarted server can bind while old connections sit in TIME_WAIT. Windows gives
    SO_REUSEADDR another meaning, a second socket may bind a port already in use, so a
    second server would not get "address already in use" (asyncio leaves it off there too).
    """
    return not windows


def reuse_port_available() -> bool:
    """True where several processes may bind one port (SO_REUSEPORT; not on Windows)."""
    return not IS_WINDOWS and hasattr(socket, "SO_REUSEPORT")


def new_event_loop(choice: LoopChoice = "asyncio", *, windows: bool = IS_WINDOWS) -> asyncio.AbstractEventLoop:
    """A new event loop for ``--loop choice``; each process (and each worker) builds its own.

    ``asyncio`` is the platform's default (Proactor on Windows, selector elsewhere).
    ``uvloop`` is the libuv loop: uvloop on POSIX, its port winloop on Windows. ``auto``
    takes it when it is installed and can start, and otherwise falls back to asyncio, with
    an INFO line when it is installed but fails (winloop under Wine, say) or when the rest
    of the fast extra is there without it. Asked for by name, a libuv loop that cannot
    start is a ConfigError.
    """
    if choice == "asyncio":
        return asyncio.new_event_loop()
    module_name = "winloop" if windows else "uvloop"
    try:
        module = importlib.import_module(module_name)
        loop: asyncio.AbstractEventLoop = module.new_event_loop()
    except Exception as exc:  # ImportError, or a build that cannot run on this system
        if choice == "uvloop":
            raise ConfigError(f"--loop uvloop: {module_name} cannot start: {type(exc).__name__}: {exc}") from None
        if installed(module_name):
            log.info("%s is installed but cannot start (%s); using the asyncio loop", module_name, exc)
        elif installed("httptools"):
            # The fast extra is there but its loop is not (a platform without a wheel).
            log.info("%s is not installed; using the asyncio loop", module_name)
        return asyncio.new_event_loop()
    return loop


def describe_loop(loop: asyncio.AbstractEventLoop) -> str:
    """The loop's name for the start-up line: ``uvloop``, ``winloop`` or ``asyncio``."""
    package = type(loop).__module__.partition(".")[0]
    return package if package in ("uvloop", "winloop") else "asyncio"


def open_file_for_reading(path: str) -> int:
    """Open ``path`` read-only and return the descriptor, never blocking on a FIFO.

    POSIX: ``O_NONBLOCK`` makes opening a named pipe return at once (reads of regular
    files ignore it), so a FIFO planted where a static file was checked cannot hang the
    event loop; the caller checks the descriptor is a regular file. Windows: ``O_BINARY``
    keeps bytes untranslated; it has no FIFOs in the file system.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    return os.open(path, flags)


@contextlib.contextmanager
def exclusive_file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block; blocks until free.

    Between processes only, for rare work that must not run twice at once (talking to an
    ACME CA). POSIX: ``flock``, released by the kernel if the holder dies. Windows:
    ``msvcrt.locking`` on the first byte, retried as each call waits 10 s at most.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # still held after 10 s: keep waiting
                    continue
            try:
                yield
            finally:
                os.lseek(descriptor, 0, os.SEEK_SET)
                msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


# Exit status of a Windows process ended by Ctrl+C or by closing its console window.
WINDOWS_CONTROL_C_EXIT = 0xC000013A


def worker_context() -> multiprocessing.context.SpawnContext:
    """The multiprocessing context worker processes start from: ``spawn`` on every platform.

    Windows has no ``fork``, and forking a process that may already run threads (the
    certificate poller, OpenSSL's, an embedder's) can copy a held lock into the child, so
    POSIX uses ``spawn`` too and one start-up path is tested everywhere. The listening
    sockets travel as ``Process`` arguments and multiprocessing's pickler hands them over
    per platform: on POSIX the descriptor is passed to the new interpreter (``pass_fds``);
    on Windows the parent calls ``socket.share(child_pid)`` and the child rebuilds the socket
    with ``socket.fromshare()``. The worker's pipe ends travel the same way (descriptor or
    duplicated handle), so a worker sees end-of-file on its control pipe when the
    supervisor dies, however it dies.
    """
    import multiprocessing  # here: a single-process server never needs it

    return multiprocessing.get_context("spawn")


def describe_exit(code: int | None, *, windows: bool = IS_WINDOWS) -> str:
    """A worker's exit status in words, for the supervisor's log line.

    POSIX reports death by signal as a negative ``exitcode`` (``-9`` for SIGKILL); Windows
    has no signals at that level, only exit codes, one of which means Ctrl+C.
    """
    if code is None:
        return "still running"
    if code < 0 and not windows:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if windows and code == WINDOWS_CONTROL_C_EXIT:
        return "ended by Ctrl+C or a closed console (0xC000013A)"
    return f"exit code {code}"


def accept_shared_in_thread(windows: bool = IS_WINDOWS) -> bool:
    """Whether a worker accepts on the shared listening sockets from a thread (Windows).

    The Proactor loop accepts by associating the listening socket with its I/O completion
    port, and Windows lets a socket join one completion port only, across every process
    that holds a duplicate of it: the second worker's ``create_server(sock=...)`` fails
    with WinError 87 on each accept. A plain ``accept()`` in a thread needs no completion
    port, and each connection it returns is a new socket the worker's loop can register.
    POSIX selector loops only poll the socket, so every worker uses ``create_server``.
    """
    return windows


# Seconds the accept thread waits for a connection before checking whether it should stop.
ACCEPT_POLL_SECONDS = 0.25


class SharedSocketAcceptor:
    """Accepts on a listening socket from a thread and gives each connection to ``loop``.

    Stands in (``close``, ``wait_closed``) for the ``asyncio.Server`` of
    ``loop.create_server(sock=...)`` where that cannot work (see
    :func:`accept_shared_in_thread`). The thread owns the socket: it polls
    (``ACCEPT_POLL_SECONDS``) so that it notices :meth:`close` and closes the socket itself,
    rather than having it closed under a blocked ``accept()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl_context: ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol_factory = protocol_factory
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._closing = threading.Event()
        self._starting: set[asyncio.Task[object]] = set()
        sock.settimeout(ACCEPT_POLL_SECONDS)
        self._thread = threading.Thread(target=self._accept_forever, name="accept", daemon=True)
        self._thread.start()

    def _accept_forever(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    connection, _ = self._sock.accept()
                except TimeoutError:
                    continue
                except OSError as exc:  # out of descriptors, or a connection reset while queued
                    log.debug("accept failed: %s", exc)
                    self._closing.wait(ACCEPT_POLL_SECONDS)
                    continue
                try:
                    self._loop.call_soon_threadsafe(self._start_connection, connection)
                except RuntimeError:  # the loop has closed
                    connection.close()
                    return
        finally:
            self._sock.close()

    def _start_connection(self, connection: socket.socket) -> None:
        if self._closing.is_set():
            connection.close()
            return
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(
                self._protocol_factory,
                connection,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        )
        self._starting.add(task)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[object]) -> None:
        self._starting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # As asyncio's own servers do: a failed TLS handshake is the client's business.
            log.debug("connection failed before it started: %s", task.exception())

    def close(self) -> None:
        """Stop accepting; the thread closes the socket within ACCEPT_POLL_SECONDS."""
        self._closing.set()
        for task in self._starting:
            task.cancel()

    def is_serving(self) -> bool:
        """True until :meth:`close`."""
        return not self._closing.is_set()

    async def wait_closed(self) -> None:
        """Wait until the accept thread has closed the socket."""
        while self._thread.is_alive():
            await asyncio.sleep(ACCEPT_POLL_SECONDS / 5)
