"""A small Django Channels project written into a temporary folder, and ``manage.py`` subprocesses.

The project has a view (``/``, its text is easy to change so a test can watch the
autoreloader pick up an edit), a static file (``/static/site.css``) and a group chat
consumer at ``/ws/chat/<room>/`` on the in-memory channel layer. ``SITE_DEBUG=0`` turns
DEBUG off.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.apps.process import OutputLines

STATIC_TEXT = "body { color: rebeccapurple; }\n"
START_TIMEOUT = 20.0

SETTINGS = """
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "asgigw-runserver-tests"
DEBUG = os.environ.get("SITE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
INSTALLED_APPS = ["gateway.django", "django.contrib.staticfiles", "channels"]
if os.environ.get("SITE_STATICFILES_FIRST") == "1":  # the wrong order, for the system check
    INSTALLED_APPS = ["django.contrib.staticfiles", "gateway.django", "channels"]
if os.environ.get("SITE_DAPHNE") in ("first", "last"):  # left over from Daphne, for the system check
    INSTALLED_APPS.insert(0 if os.environ["SITE_DAPHNE"] == "first" else len(INSTALLED_APPS), "daphne")
ROOT_URLCONF = "site_project.urls"
# SITE_PLAIN_DJANGO=1: no ASGI_APPLICATION, so runserver serves Django's own ASGI handler.
ASGI_APPLICATION = None if os.environ.get("SITE_PLAIN_DJANGO") == "1" else "site_project.asgi.application"
DATABASES = {}
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
USE_TZ = True
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
"""

URLS = """
from django.urls import path

from site_project import views

urlpatterns = [path("", views.home)]
"""

VIEWS = """
from django.http import HttpResponse


def home(request):
    return HttpResponse(GREETING + " " + request.scheme, content_type="text/plain")


GREETING = {greeting!r}
"""

CONSUMERS = """
from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(self.group, {"type": "chat.message", "text": text_data})

    async def chat_message(self, event):
        await self.send(text_data=event["text"])
"""

ASGI = """
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from site_project.consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter([path("ws/chat/<str:room>/", ChatConsumer.as_asgi())]),
    }
)
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_project(folder: Path, greeting: str = "hello v1") -> Path:
    """Write the project into ``folder``; return ``folder``."""
    package = folder / "site_project"
    package.mkdir(parents=True, exist_ok=True)
    (folder / "static").mkdir(exist_ok=True)
    (folder / "static" / "site.css").write_text(STATIC_TEXT, encoding="utf-8")
    (folder / "manage.py").write_text(MANAGE, encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    files = {"settings": SETTINGS, "urls": URLS, "consumers": CONSUMERS, "asgi": ASGI}
    for name, text in files.items():
        (package / f"{name}.py").write_text(text, encoding="utf-8")
    set_greeting(folder, greeting)
    return folder


def set_greeting(folder: Path, greeting: str) -> None:
    """Rewrite the view module so ``/`` answers ``greeting`` (the autoreloader sees the change)."""
    (folder / "site_project" / "views.py").write_text(VIEWS.format(greeting=greeting), encoding="utf-8")


class ManageProcess:
    """``python manage.py ARGS`` in its own session; stdout and stderr collected as lines."""

    def __init__(self, folder: Path, *args: str, **env: str) -> None:
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_RUNSERVER_HIDE_WARNING": "true", **env}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=folder,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the reloader's child too: one group to signal or kill
        )
        assert self.process.stdout is not None
        self._output = OutputLines(self.process.stdout, "output")

    @property
    def lines(self) -> list[str]:
        """The output lines so far (their count marks a point to wait from)."""
        return self._output.lines

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return self._output.text

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT, after: int = 0) -> re.Match[str]:
        """Wait for an output line (from line number ``after`` on) matching ``pattern``."""
        return self._output.wait_for(pattern, timeout, after)

    def wait_serving(self, after: int = 0) -> str:
        """Wait for the start-up banner; return the URL it announces (``https://127.0.0.1:PORT``)."""
        return self.wait_for(r"development server .* at (\S+)/$", after=after).group(1)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; return its exit code."""
        code = self.process.wait(timeout)
        self._output.join()
        return code

    def stop(self) -> None:
        """SIGTERM, then kill the whole session (a reloader child included); reap the process."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
            self._output.join()
            if self.process.stdout is not None:
                self.process.stdout.close()


@contextlib.contextmanager
def manage_process(folder: Path, *args: str, **env: str) -> Iterator[ManageProcess]:
    """Run ``manage.py ARGS`` until the block ends."""
    process = ManageProcess(folder, *args, **env)
    try:
        yield process
    finally:
        process.stop()
