"""``--max-connections`` on the real Windows CPython 3.12 (under Wine), driven from Linux.

Skipped unless ``ASGIGW_WINPY`` names a folder built by ``.ci/windows-setup.sh`` (see
test_windows_tier.py). Both Windows accept paths must leave connections beyond the limit
unaccepted: one process accepts in its own loop through the Proactor's ``sock_accept``
(gateway/limits/listener.py), workers accept in a thread (platform.SharedSocketAcceptor).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.windows.test_windows_tier import (  # noqa: F401 - the fixture stops Wine afterwards
    WINPY,
    _built,
    asgigw_argv,
    free_port,
    windows_server,
    wine_stopped_afterwards,
)
from tests.windows.test_windows_workers import wait_for_line

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(not _built(WINPY), reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh"),
]

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def answered(sock: socket.socket, timeout: float) -> bool:
    """True when a response starts arriving on ``sock`` within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(100).startswith(b"HTTP/1.1 200 ")
    except TimeoutError:
        return False


def check_waiting_then_served(port: int, held: int) -> None:
    """``held`` open connections fill the limit; one more waits until one of them closes."""
    holders = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(held)]
    try:
        for holder in holders:  # each is accepted and served (and stays open: keep-alive)
            holder.sendall(REQUEST)
            assert answered(holder, 15)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as waiting:
            waiting.sendall(REQUEST)
            assert not answered(waiting, 2.0), "a connection beyond --max-connections was served"
            holders.pop().close()
            assert answered(waiting, 15)
    finally:
        for holder in holders:
            holder.close()


def test_one_process_leaves_connections_beyond_the_limit_waiting(tmp_path: Path) -> None:
    port = free_port()
    argv = asgigw_argv(port, "--max-connections", "1", "--keep-alive-timeout", "30")
    with windows_server(argv, port, tmp_path / "server.log"):
        # windows_server's readiness probe connected once; wait for its place to come back.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
            probe.sendall(REQUEST)
            assert answered(probe, 15)
        check_waiting_then_served(port, held=1)


def test_workers_accept_threads_leave_connections_beyond_the_limit_waiting(tmp_path: Path) -> None:
    port = free_port()
    argv = asgigw_argv(port, "--workers", "2", "--max-connections", "1", "--keep-alive-timeout", "30")
    log_path = tmp_path / "server.log"
    with windows_server(argv, port, log_path):
        wait_for_line(log_path, r"asgigw serving")
        check_waiting_then_served(port, held=2)
