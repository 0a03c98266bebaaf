"""Windows tier, Django Channels: the chat example (examples/chat) on the Windows CPython.

asgigw serves ``chat.asgi:application`` under Wine (Django, Channels and asgiref installed
as win_amd64 wheels by .ci/windows-setup.sh, tzdata too, which Django needs on Windows);
httpx and the ``websockets`` client on Linux load a page over HTTPS (HTTP/1.1 and HTTP/2)
and chat over wss. The SQLite database is migrated by the Linux Python beforehand; the file
format is the same on both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import CertFiles
from tests.test_django_chat import manage
from tests.windows.test_windows_tier import (  # noqa: F401 - the fixture stops Wine afterwards
    WINPY,
    _built,
    free_port,
    trusting,
    windows_server,
    wine_stopped_afterwards,
)

MESSAGE_TIMEOUT = 15.0  # Wine is slower than a native process


def _has_django(folder: str) -> bool:
    # setup.sh unpacks every wheel into py/Lib, so a package is there or it is not installed.
    return _built(folder) and (Path(folder) / "py" / "Lib" / "django").is_dir()


pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(not _built(WINPY), reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh"),
    pytest.mark.skipif(
        _built(WINPY) and not _has_django(WINPY),
        reason="the Windows Python has no Django: rebuild it with the current .ci/windows-setup.sh",
    ),
]


@pytest.fixture
def chat_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's settings for both Pythons (Wine passes the environment on)."""
    settings = {
        "DJANGO_SETTINGS_MODULE": "chat.settings",
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),  # /tmp/... is Z:\tmp\... for Windows
        "CHAT_REDIS_URL": "",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    manage(settings, "migrate", "--noinput", "-v", "0")


def test_chat_page_and_wss_round_trip(tmp_path: Path, cert_files: CertFiles, chat_settings: None) -> None:
    port = free_port()
    argv = ["-m", "gateway", "--app-dir", "examples/chat", "chat.asgi:application", "--port", str(port)]
    argv += ["--no-access-log", "--cert", str(cert_files.cert), "--key", str(cert_files.key)]
    base = f"https://localhost:{port}"

    async def chat() -> list[dict[str, Any]]:
        url = f"wss://localhost:{port}/ws/chat/lobby/"
        origin = websockets.Origin(base)
        async with websockets.connect(url, ssl=trusting(cert_files.ca), origin=origin, open_timeout=30) as client:
            welcome = json.loads(await asyncio.wait_for(client.recv(), MESSAGE_TIMEOUT))
            await client.send(json.dumps({"name": "ada", "message": "hello from Linux"}))
            return [welcome, json.loads(await asyncio.wait_for(client.recv(), MESSAGE_TIMEOUT))]

    with windows_server(argv, port, tmp_path / "server.log") as log_path:
        pages = []
        for http2 in (False, True):
            with httpx.Client(verify=trusting(cert_files.ca), http2=http2, timeout=30) as client:
                pages.append(client.get(f"{base}/"))
        welcome, message = asyncio.run(chat())
        log = log_path.read_text(errors="replace")
    assert [(page.status_code, page.http_version) for page in pages] == [(200, "HTTP/1.1"), (200, "HTTP/2")], log
    assert all("Pick a room" in page.text for page in pages)
    assert (welcome["type"], welcome["scheme"]) == ("welcome", "wss")
    assert message == {"type": "message", "room": "lobby", "author": "ada", "message": "hello from Linux"}
    assert "Traceback" not in log, log
