"""Every difference between POSIX and Windows lives here.

Windows runs asyncio on the Proactor loop: there is no ``loop.add_signal_handler`` (we use
``signal.signal`` and hop onto the loop with ``call_soon_threadsafe``), no ``fork``, no
``SO_REUSEPORT`` and no uvloop. Callers ask this module instead of testing the platform.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

IS_WINDOWS = sys.platform == "win32"

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
    sighup = getattr(signal, "SIGHUP", None)
    if windows or sighup is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    undo = _loop_handlers_undo(loop, [sighup])
    loop.add_signal_handler(sighup, callback)
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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The default loop for this platform (Proactor on Windows, selector elsewhere)."""
    return asyncio.new_event_loop()


def open_file_for_reading(path: str) -> int:
    """Open ``path`` read-only and return the descriptor, never blocking on a FIFO.

    POSIX: ``O_NONBLOCK`` makes opening a named pipe return at once (reads of regular
    files ignore it), so a FIFO planted where a static file was checked cannot hang the
    event loop; the caller checks the descriptor is a regular file. Windows: ``O_BINARY``
    keeps bytes untranslated; it has no FIFOs in the file system.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    return os.open(path, flags)
