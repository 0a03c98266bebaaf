"""Memory scenario: what an idle keep-alive connection costs a server, in KiB of RSS.

One client process (this one) opens N plain-socket connections to the server, sends one
request on each and reads the full response, and keeps them all open. The server's VmRSS
(and VmHWM, its peak) from /proc/PID/status before and after, divided by N, is the cost
per idle connection. Everything is bounded: connect/read timeouts, response size, count.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from dataclasses import dataclass

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: asgigw-bench\r\n\r\n"
MAX_RESPONSE = 64 * 1024
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class MemorySample:
    """One measurement of one server; sizes in KiB as /proc reports them."""

    rss_before_kib: int
    rss_after_kib: int
    hwm_after_kib: int
    connections: int
    still_open: int

    @property
    def per_connection_kib(self) -> float:
        """RSS growth divided by the number of idle connections held open."""
        return (self.rss_after_kib - self.rss_before_kib) / max(self.connections, 1)


def raise_open_file_limit(needed: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards ``needed`` (children started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"benchmarks: need {needed} open files, the hard limit allows {soft}")


def proc_status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (Linux /proc)."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def _read_response(connection: socket.socket) -> None:
    """Read one whole response (head + content-length body); raise if it is not a 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk or len(data) > MAX_RESPONSE:
            raise ConnectionError("server closed or sent an oversized head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected status line {head.splitlines()[0]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < min(length, MAX_RESPONSE):
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("server closed mid-body")
        body += chunk


def open_idle_connections(port: int, count: int, timeout: float = 5.0) -> list[socket.socket]:
    """Open ``count`` connections, one request/response on each, and return them still open."""
    connections: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            connections.append(connection)
            connection.sendall(REQUEST)
            _read_response(connection)
    except BaseException:
        close_all(connections)
        raise
    return connections


def count_still_open(connections: list[socket.socket]) -> int:
    """How many connections the server has not closed (a readable idle socket means EOF here)."""
    # selectors (epoll) rather than select(): descriptors above FD_SETSIZE are expected.
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            selector.register(connection, selectors.EVENT_READ)
        readable = selector.select(timeout=0)
    return len(connections) - len(readable)


def close_all(connections: list[socket.socket]) -> None:
    """Close every socket, ignoring ones that are already broken."""
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.close()
    connections.clear()


def measure(pid: int, port: int, count: int) -> MemorySample:
    """Warm the server up, read RSS, hold ``count`` idle connections, read RSS and HWM again."""
    # A few throw-away connections first, so one-time costs (lazy imports, first-request
    # caches) land in "before" and not in the per-connection figure.
    close_all(open_idle_connections(port, 16))
    time.sleep(SETTLE_SECONDS)
    before = proc_status_kib(pid)
    connections = open_idle_connections(port, count)
    try:
        time.sleep(SETTLE_SECONDS)
        after = proc_status_kib(pid)
        still_open = count_still_open(connections)
    finally:
        close_all(connections)
    return MemorySample(
        rss_before_kib=before["VmRSS"],
        rss_after_kib=after["VmRSS"],
        hwm_after_kib=after["VmHWM"],
        connections=count,
        still_open=still_open,
    )
