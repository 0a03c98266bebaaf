"""Django Channels over asgigw: a group chat consumer, the in-memory channel layer, real clients.

Skipped when Django or Channels is not installed (they are not asgigw dependencies).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

django = pytest.importorskip("django")
pytest.importorskip("channels")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="asgigw-tests",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from tests.conftest import CertFiles, running_server  # noqa: E402

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")

disconnect_codes: list[int] = []


class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Everyone in the room gets every message; /deny refuses the connection."""

    async def connect(self) -> None:
        if self.scope["url_route"]["kwargs"]["room"] == "deny":
            await self.close()
            return
        await self.channel_layer.group_add("room", self.channel_name)
        await self.accept("chat" if "chat" in self.scope["subprotocols"] else None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send("room", {"type": "chat.message", "text": text_data})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        disconnect_codes.append(code)
        await self.channel_layer.group_discard("room", self.channel_name)


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/<str:room>/", ChatConsumer.as_asgi())])})


def test_channels_group_chat_over_wss(cert_files: CertFiles) -> None:
    disconnect_codes.clear()
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(application, graceful_timeout=5, **options) as server:
        base = f"wss://localhost:{server.port}/ws"

        async def clients() -> None:
            context = cert_files.client_context
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(f"{base}/deny/", ssl=context):
                    pass
            assert refused.value.response.status_code == 403
            async with (
                websockets.connect(f"{base}/lobby/", ssl=context, subprotocols=["chat"]) as alice,
                websockets.connect(f"{base}/lobby/", ssl=context) as bob,
            ):
                assert alice.subprotocol == "chat" and bob.subprotocol is None
                await alice.send("hello, room")
                assert await alice.recv() == "hello, room"
                assert await bob.recv() == "hello, room"
                await bob.close(4002)
            # A consumer still connected at shutdown gets 1001 and the server stops quickly.
            async with websockets.connect(f"{base}/lobby/", ssl=context) as carol:
                started = time.monotonic()
                stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
                with pytest.raises(websockets.ConnectionClosed):
                    await carol.recv()
                assert carol.close_code == 1001
                await stopping
                assert time.monotonic() - started < 4

        asyncio.run(clients())
    assert 4002 in disconnect_codes and 1001 in disconnect_codes
