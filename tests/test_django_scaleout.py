"""Scale-out: two asgigw processes serving one Django Channels project, joined by Redis.

A real ``redis-server`` on a free loopback port carries the channel layer
(``channels_redis``); a chat message sent over wss to process A reaches a client of process
B and the other way round. With the in-memory layer instead, the same message stays in its
own process: the channel layer, not asgigw, is what joins them (docs/django-runserver.md).
Skipped when ``redis-server`` is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.apps.django_project import write_project
from tests.apps.process import ServerProcess, free_port, gateway_process
from tests.conftest import CertFiles

pytest.importorskip("django")
pytest.importorskip("channels")
pytest.importorskip("channels_redis")

REDIS_START_TIMEOUT = 10.0
MESSAGE_TIMEOUT = 5.0
# The consumer checks Origin against ALLOWED_HOSTS, as a browser page of the site would send it.
ORIGIN = "https://localhost"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no persistence), stopped after the test."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    arguments = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*arguments, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port} (exit {process.poll()})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def redis_answers(port: int) -> bool:
    """True once Redis answers PING on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The Channels project both processes serve."""
    return write_project(tmp_path / "project")


@contextlib.contextmanager
def chat_servers(project: Path, cert_files: CertFiles, **env: str) -> Iterator[list[ServerProcess]]:
    """Two asgigw processes (free ports, trustme certificate) serving ``project``."""
    args = (
        *("--port", "0", "--cert", str(cert_files.cert), "--key", str(cert_files.key), "--no-access-log"),
        *("--app-dir", str(project), "site_project.asgi:application"),
    )
    environment = {"DJANGO_SETTINGS_MODULE": "site_project.settings", **env}
    with (
        gateway_process(*args, plain=False, **environment) as first,
        gateway_process(*args, plain=False, **environment) as second,
    ):
        yield [first, second]


def room_url(server: ServerProcess, room: str) -> str:
    """The chat consumer's wss URL on ``server`` (by name, so the certificate matches)."""
    port = server.url.rsplit(":", 1)[1]
    return f"wss://localhost:{port}/ws/chat/{room}/"


async def exchange(
    servers: list[ServerProcess], cert_files: CertFiles, timeout: float = MESSAGE_TIMEOUT
) -> tuple[str, str, list[str]]:
    """Alice on A and Bob on B chat in one room; Carol on B sits in another room.

    Returns what Bob got from Alice, what Alice got from Bob, and whatever reached Carol;
    a message that does not cross between the processes within ``timeout`` raises TimeoutError.
    """
    context = cert_files.client_context
    first, second = servers

    def connect(server: ServerProcess, room: str) -> Any:
        return websockets.connect(room_url(server, room), ssl=context, origin=websockets.Origin(ORIGIN))

    async with connect(first, "lobby") as alice, connect(second, "lobby") as bob, connect(second, "other") as carol:
        await alice.send("hello from A")
        assert await asyncio.wait_for(alice.recv(), MESSAGE_TIMEOUT) == "hello from A"  # its own echo
        from_alice = await asyncio.wait_for(bob.recv(), timeout)
        await bob.send("hello from B")
        assert await asyncio.wait_for(bob.recv(), MESSAGE_TIMEOUT) == "hello from B"
        from_bob = await asyncio.wait_for(alice.recv(), timeout)
        stray: list[str] = []
        with contextlib.suppress(TimeoutError):
            stray.append(str(await asyncio.wait_for(carol.recv(), 0.5)))
        return str(from_alice), str(from_bob), stray


def test_chat_message_crosses_processes_through_redis(project: Path, cert_files: CertFiles, redis_url: str) -> None:
    with chat_servers(project, cert_files, CHAT_REDIS_URL=redis_url) as servers:
        assert servers[0].url != servers[1].url
        from_alice, from_bob, stray = asyncio.run(exchange(servers, cert_files))
    assert (from_alice, from_bob) == ("hello from A", "hello from B")
    assert stray == []


def test_without_redis_each_process_is_alone(project: Path, cert_files: CertFiles) -> None:
    with chat_servers(project, cert_files) as servers:
        with pytest.raises(TimeoutError):
            asyncio.run(exchange(servers, cert_files, timeout=1.5))
