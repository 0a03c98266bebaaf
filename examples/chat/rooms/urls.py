"""HTTP URLs of the rooms app."""

from django.urls import path, re_path

from . import views
from .models import ROOM_NAME_PATTERN

app_name = "rooms"

urlpatterns = [
    path("", views.index, name="index"),
    re_path(rf"^chat/(?P<room_name>{ROOM_NAME_PATTERN})/$", views.room, name="room"),
    re_path(rf"^chat/(?P<room_name>{ROOM_NAME_PATTERN})/post/$", views.post, name="post"),
    path("demo/stream/", views.stream, name="stream"),
    path("demo/error/", views.fail, name="error"),
    path("demo/upload/", views.upload, name="upload"),
    path("demo/whoami/", views.whoami, name="whoami"),
    path("demo/slow/", views.slow, name="slow"),
]
