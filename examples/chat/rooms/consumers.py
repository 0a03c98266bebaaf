"""The chat consumer: one channel-layer group per room, every message broadcast to the room.

Messages are JSON both ways. A client sends ``{"message": "hi", "name": "ada"}`` (``name`` is
used only when the WebSocket's session has no logged-in user). Everyone in the room, the
sender too, receives ``{"type": "message", "room": ..., "author": ..., "message": ...}``.
On connecting, a client first receives a ``welcome`` that says what the consumer sees of
the connection (scheme, HTTP version, user), which the tests use.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from .models import Message, Room

MAX_MESSAGE_LENGTH = 2000
MAX_AUTHOR_LENGTH = 150


def group_name(room_name: str) -> str:
    """The channel-layer group of a room (room names are valid group-name characters)."""
    return f"chat.{room_name}"


async def post_message(room_name: str, author: str, text: str) -> None:
    """Store a message and send it to everyone connected to its room."""
    room, _ = await Room.objects.aget_or_create(name=room_name)
    await Message.objects.acreate(room=room, author=author, text=text)
    event = {"type": "chat.message", "room": room_name, "author": author, "message": text}
    await get_channel_layer().group_send(group_name(room_name), event)


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """A WebSocket at /ws/chat/<room>/ joined to that room's group."""

    async def connect(self) -> None:
        """Join the room's group, accept, and send the welcome."""
        self.room_name: str = self.scope["url_route"]["kwargs"]["room_name"]
        await self.channel_layer.group_add(group_name(self.room_name), self.channel_name)
        await self.accept()
        user = self.scope["user"]
        await self.send_json(
            {
                "type": "welcome",
                "room": self.room_name,
                "scheme": self.scope["scheme"],
                "http_version": self.scope.get("http_version"),
                "user": user.get_username() if user.is_authenticated else None,
            }
        )

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        await self.channel_layer.group_discard(group_name(self.room_name), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Answer malformed input with an error message instead of closing the socket."""
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "send a JSON object"})
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        """Broadcast one chat message to the room."""
        text = content.get("message")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_LENGTH:
            await self.send_json({"type": "error", "error": f"message: 1 to {MAX_MESSAGE_LENGTH} characters"})
            return
        await post_message(self.room_name, self.author(content.get("name")), text.strip())

    def author(self, name: object) -> str:
        """The logged-in user's name, else the name the client gave, else "anonymous"."""
        user = self.scope["user"]
        if user.is_authenticated:
            return str(user.get_username())
        if isinstance(name, str) and name.strip():
            return name.strip()[:MAX_AUTHOR_LENGTH]
        return "anonymous"

    async def chat_message(self, event: dict[str, Any]) -> None:
        """A ``chat.message`` from the group: pass it to this client."""
        await self.send_json(
            {"type": "message", "room": event["room"], "author": event["author"], "message": event["message"]}
        )
