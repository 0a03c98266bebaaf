"""Scale-out: two asgigw processes serving the Django Channels example, joined by Redis.

Both processes serve examples/chat (one migrated temporary SQLite database). A real
``redis-server`` on a free loopback port carries the channel layer (``CHAT_REDIS_URL``
selects ``channels_redis``); a chat message sent over wss to process A reaches a client of
process B and the other way round. With the in-memory layer instead, the same message stays
in its own process: the channel layer, not asgigw, is what joins them
(docs/django-runserver.md). Skipped when ``redis-server`` is not installed (CI installs it:
.ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.apps.process import ServerProcess, free_port, gateway_process
from tests.conftest import CertFiles

pytest.importorskip("django")
pytest.importorskip("channels")
pytest.importorskip("channels_redis")

from tests.test_django_chat import CHAT_DIR, manage

REDIS_START_TIMEOUT = 10.0
MESSAGE_TIMEOUT = 5.0
# Longer than redis-py 8's default socket timeout (5 s), which, unless the layer turns it
# off, kills every consumer whose blocking read on Redis waits that long.
IDLE_SECONDS = 6.0


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
def chat_env(tmp_path: Path) -> dict[str, str]:
    """Settings for examples/chat: a migrated temporary database, the in-memory layer."""
    env = {
        "DJANGO_SETTINGS_MODULE": "chat.settings",
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": "asgigw-scaleout-" + os.urandom(8).hex(),  # shared by both processes
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),
        "CHAT_REDIS_URL": "",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    return env


@contextlib.contextmanager
def chat_servers(env: dict[str, str], cert_files: CertFiles) -> Iterator[list[ServerProcess]]:
    """Two asgigw processes (free ports, trustme certificate) serving examples/chat."""
    args = (
        *("--port", "0", "--cert", str(cert_files.cert), "--key", str(cert_files.key), "--no-access-log"),
        *("--app-dir", str(CHAT_DIR), "chat.asgi:application"),
    )
    with gateway_process(*args, plain=False, **env) as first, gateway_process(*args, plain=False, **env) as second:
        yield [first, second]
    for server in (first, second):
        assert "Traceback" not in server.stderr, server.stderr


def connect(server: ServerProcess, room: str, context: ssl.SSLContext) -> Any:
    """A wss connection to a room on ``server``, with the Origin the example's validator wants."""
    port = server.url.rsplit(":", 1)[1]
    origin = websockets.Origin(f"https://localhost:{port}")
    return websockets.connect(f"wss://localhost:{port}/ws/chat/{room}/", ssl=context, origin=origin, proxy=None)


async def receive(client: Any, timeout: float = MESSAGE_TIMEOUT) -> dict[str, Any]:
    """The next JSON message from the example's consumer."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(client.recv(), timeout))
    return message


async def say(client: Any, name: str, text: str) -> None:
    """Post a chat message as ``name`` (the example's anonymous users name themselves)."""
    await client.send(json.dumps({"name": name, "message": text}))


async def exchange(
    servers: list[ServerProcess], cert_files: CertFiles, timeout: float = MESSAGE_TIMEOUT, idle: float = 0.0
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Alice on A and Bob on B chat in one room (after ``idle`` seconds of silence); Carol on
    B sits in another room.

    Returns what Bob got from Alice, what Alice got from Bob, and whatever reached Carol;
    a message that does not cross between the processes within ``timeout`` raises TimeoutError.
    """
    context = cert_files.client_context
    first, second = servers
    async with (
        connect(first, "lobby", context) as alice,
        connect(second, "lobby", context) as bob,
        connect(second, "other", context) as carol,
    ):
        for client in (alice, bob, carol):
            assert (await receive(client))["type"] == "welcome"
        await asyncio.sleep(idle)
        await say(alice, "alice", "hello from A")
        assert (await receive(alice))["message"] == "hello from A"  # the sender gets it too
        from_alice = await receive(bob, timeout)
        await say(bob, "bob", "hello from B")
        assert (await receive(bob))["message"] == "hello from B"
        from_bob = await receive(alice, timeout)
        stray: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            stray.append(await receive(carol, 0.5))
        return from_alice, from_bob, stray


def test_chat_message_crosses_processes_through_redis(
    chat_env: dict[str, str], cert_files: CertFiles, redis_url: str
) -> None:
    with chat_servers({**chat_env, "CHAT_REDIS_URL": redis_url}, cert_files) as servers:
        assert servers[0].url != servers[1].url
        from_alice, from_bob, stray = asyncio.run(exchange(servers, cert_files, idle=IDLE_SECONDS))
    assert from_alice == {"type": "message", "room": "lobby", "author": "alice", "message": "hello from A"}
    assert from_bob == {"type": "message", "room": "lobby", "author": "bob", "message": "hello from B"}
    assert stray == []


@pytest.mark.slow
def test_without_redis_each_process_is_alone(chat_env: dict[str, str], cert_files: CertFiles) -> None:
    with chat_servers(chat_env, cert_files) as servers:
        with pytest.raises(TimeoutError):
            asyncio.run(exchange(servers, cert_files, timeout=1.5))
