"""Rooms and messages in the Django admin (/admin/)."""

from django.contrib import admin

from .models import Message, Room


class MessageInline(admin.TabularInline):
    """A room's messages on its admin page."""

    model = Message
    extra = 0


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with their messages inline."""

    list_display = ("name", "created")
    search_fields = ("name",)
    inlines = (MessageInline,)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Every message, newest first."""

    list_display = ("room", "author", "text", "created")
    list_filter = ("room",)
    ordering = ("-created",)
