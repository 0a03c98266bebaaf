"""``--workers 2`` serving the Django Channels example, its channel layer on a real Redis.

Clients of one room connect to the one port until at least one WebSocket sits on each
worker (the access-log line of each handshake names the worker's pid and the client's
port); a message posted on one worker must reach the room's clients on the other. asgigw
shares nothing between its workers: channels_redis carries the group message. Skipped
without redis-server, Django or Channels (as tests/test_django_scaleout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.apps.process import ServerProcess
from tests.conftest import CertFiles
from tests.test_django_scaleout import CHAT_DIR, chat_env, connect, receive, redis_url, say  # noqa: F401 (fixtures)
from tests.test_workers import supervisor

pytest.importorskip("django")
pytest.importorskip("channels")
pytest.importorskip("channels_redis")

HANDSHAKE = r'\[worker (\d+)\] 127\.0\.0\.1:{port} - "WEBSOCKET /ws/chat/lobby/ HTTP/1\.1" 101'
# Connections to open at most before every worker holds one (the kernel picks the worker).
MAX_CLIENTS = 16


async def clients_on_two_workers(
    server: ServerProcess, cert_files: CertFiles, stack: contextlib.AsyncExitStack
) -> dict[int, Any]:
    """One open, welcomed client per worker pid, keyed by pid."""
    by_worker: dict[int, Any] = {}
    for _ in range(0, MAX_CLIENTS, 4):
        # A few handshakes at once, so that a worker busy with one leaves the next to another.
        opening = [stack.enter_async_context(connect(server, "lobby", cert_files.client_context)) for _ in range(4)]
        batch = await asyncio.gather(*opening)
        for client in batch:
            assert (await receive(client))["type"] == "welcome"
            port = client.local_address[1]
            pid = int(server.wait_for(HANDSHAKE.format(port=port), timeout=5).group(1))
            by_worker.setdefault(pid, client)
        if len(by_worker) >= 2:
            return by_worker
    pytest.fail(f"{MAX_CLIENTS} WebSockets all went to worker(s) {sorted(by_worker)}")


def test_chat_group_message_crosses_workers(chat_env: dict[str, str], redis_url: str, cert_files: CertFiles) -> None:  # noqa: F811
    env = {**chat_env, "CHAT_REDIS_URL": redis_url}
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    args = ("--port", "0", "--workers", "2", *tls, "--app-dir", str(CHAT_DIR), "chat.asgi:application")

    async def chat(server: ServerProcess) -> tuple[dict[str, Any], dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            first, second = list((await clients_on_two_workers(server, cert_files, stack)).values())[:2]
            await say(first, "alice", "hello from one worker")
            heard_on_the_other = await receive_from(second, "alice")
            await say(second, "bob", "and back from the other")
            heard_back = await receive_from(first, "bob")
            return heard_on_the_other, heard_back

    with supervisor(*args, plain=False, env=env) as server:
        heard_on_the_other, heard_back = asyncio.run(chat(server))
    assert heard_on_the_other == {
        "type": "message",
        "room": "lobby",
        "author": "alice",
        "message": "hello from one worker",
    }
    assert heard_back["author"] == "bob" and heard_back["message"] == "and back from the other"
    assert "Traceback" not in server.stderr, server.stderr


async def receive_from(client: Any, author: str) -> dict[str, Any]:
    """The next chat message by ``author`` (everyone in the room, the sender too, gets each)."""
    while True:
        message = await receive(client)
        if message["type"] == "message" and message["author"] == author:
            return message
