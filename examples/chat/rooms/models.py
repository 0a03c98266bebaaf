"""A room has a name (used in its URLs and its channel-layer group) and messages."""

from django.db import models

# Room names appear in URLs and in channel-layer group names, which allow ASCII letters,
# digits, hyphens, underscores and periods only; the URL patterns use the same rule.
ROOM_NAME_PATTERN = r"[-a-zA-Z0-9_]{1,50}"


class Room(models.Model):
    """A chat room, created from the index page's form, the admin, or by its first message."""

    name = models.SlugField(max_length=50, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One message posted in a room, over the WebSocket or with the room page's form."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.CharField(max_length=150)
    text = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created", "id")

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.text[:40]}"
