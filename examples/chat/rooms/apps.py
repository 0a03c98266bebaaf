"""Django app configuration of the rooms app."""

from django.apps import AppConfig


class RoomsConfig(AppConfig):
    """Chat rooms and their messages."""

    name = "rooms"
    verbose_name = "Chat rooms"
