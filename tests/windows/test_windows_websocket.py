"""Windows tier, WebSocket: a wss echo round trip against asgigw on the Windows CPython.

The server runs ``examples/websocket_echo.py`` under Wine (Proactor transport, Windows
``_ssl``, and no ``websockets`` package, so wsproto's own unmasking); the ``websockets``
client on Linux talks to it over 127.0.0.1 with permessage-deflate, as a browser would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from tests.conftest import CertFiles
from tests.windows.test_windows_tier import (  # noqa: F401 - the fixture stops Wine afterwards
    WINPY,
    _built,
    free_port,
    trusting,
    windows_server,
    wine_stopped_afterwards,
)

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(not _built(WINPY), reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh"),
]


def test_wss_echo_round_trip(tmp_path: Path, cert_files: CertFiles) -> None:
    port = free_port()
    argv = ["-m", "gateway", "--app-dir", "examples", "websocket_echo:app", "--port", str(port)]
    argv += ["--no-access-log", "--cert", str(cert_files.cert), "--key", str(cert_files.key)]

    async def client() -> list[object]:
        url = f"wss://localhost:{port}/echo"
        async with websockets.connect(url, ssl=trusting(cert_files.ca), subprotocols=["chat"], max_size=None) as ws:
            replies: list[object] = [ws.subprotocol, ws.response.headers.get("sec-websocket-extensions")]
            for message in ("hello from Linux", b"\x00\x01\x02", "é" * 1000, bytes(range(256)) * 1024):
                await ws.send(message)
                replies.append(await ws.recv() == message)
            await ws.close(4000, "bye")
            replies.append(ws.close_code)
            return replies

    with windows_server(argv, port, tmp_path / "server.log"):
        replies = asyncio.run(client())
    assert replies == ["chat", "permessage-deflate", True, True, True, True, 4000], json.dumps(replies, default=str)
