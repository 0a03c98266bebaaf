"""The Django Channels example (examples/chat) end to end: a real ``python -m gateway``
process serving the real project over TLS, driven by httpx (HTTP/1.1 and HTTP/2), the
``websockets`` client, and a raw h2 + wsproto client for WebSocket over HTTP/2.

Django settings are process-global, so the project runs in its own process (its settings
steered by environment variables) and this module never configures Django itself. The
database is a temporary SQLite file, migrated once for the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.events
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, TextMessage

from tests.apps.process import ROOT, ServerProcess, gateway_env, gateway_process, run_gateway
from tests.conftest import CertFiles
from tests.test_websocket_http2 import H2WebSocketClient

pytest.importorskip("django")
pytest.importorskip("channels")

CHAT_DIR = ROOT / "examples" / "chat"
PAGE_SCRIPT = CHAT_DIR / "rooms" / "static" / "rooms" / "chat.js"
PAGE_HARNESS = ROOT / "tests" / "apps" / "chat_page.js"
APP = ("--app-dir", str(CHAT_DIR), "chat.asgi:application")
ADMIN_PASSWORD = "asgigw-admin-password"
HTTP_VERSIONS = ["HTTP/1.1", "HTTP/2"]
UPLOAD_SIZE = 20 * 1024 * 1024
RECEIVE_TIMEOUT = 5.0
CROWD = 200
# The traceback Django logs for /demo/error/ (on purpose); any other one fails the module.
FAIL_TRACEBACK = "RuntimeError: this view fails on purpose"


@dataclass
class ChatSite:
    """The example project served by a gateway subprocess on 127.0.0.1."""

    server: ServerProcess
    port: int
    env: dict[str, str]
    ca_file: Path

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"wss://localhost:{self.port}/ws/chat"

    def ssl_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A fresh client context per use (httpx sets ALPN on the context it is given)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    def http(self, version: str) -> httpx.Client:
        """An httpx client speaking exactly ``version`` to the site."""
        http2 = version == "HTTP/2"
        return httpx.Client(
            base_url=self.base,
            verify=self.ssl_context(),
            http1=not http2,
            http2=http2,
            timeout=15,
            trust_env=False,
        )

    def websocket(self, room: str, **options: Any) -> connect:
        """A ``websockets`` connection to a room, with the Origin the validator wants."""
        options.setdefault("origin", self.base)
        return connect(
            f"{self.ws_base}/{room}/", ssl=self.ssl_context(), proxy=None, open_timeout=15, close_timeout=2, **options
        )


def manage(env: dict[str, str], *args: str) -> None:
    """Run ``manage.py ARGS`` for the example with ``env``; fail with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=CHAT_DIR,
        env=gateway_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def chat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the project: a migrated temporary database with an admin user."""
    folder = tmp_path_factory.mktemp("chat")
    env = {
        "DJANGO_SETTINGS_MODULE": "chat.settings",
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": "asgigw-tests-" + os.urandom(8).hex(),
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CHAT_DATABASE": str(folder / "db.sqlite3"),
        "CHAT_STATIC_ROOT": str(folder / "static"),
        "CHAT_REDIS_URL": "",  # the in-memory channel layer, even if the caller's shell has Redis
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    superuser = {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
    manage(superuser, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    return env


def start_site(env: dict[str, str], cert_files: CertFiles, *extra: str) -> AbstractContextManager[ServerProcess]:
    """``python -m gateway`` on the example, TLS with the test certificate, a free port."""
    tls = ("--cert", str(cert_files.cert), "--key", str(cert_files.key))
    return gateway_process("--port", "0", "--no-access-log", *tls, *extra, *APP, plain=False, **env)


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def site(chat_env: dict[str, str], cert_files: CertFiles) -> Iterator[ChatSite]:
    """One gateway process for the module's HTTP and WebSocket tests."""
    with start_site(chat_env, cert_files) as server:
        yield ChatSite(server=server, port=port_of(server), env=chat_env, ca_file=cert_files.ca)
    stderr = server.stderr
    assert stderr.count("Traceback") == stderr.count(FAIL_TRACEBACK), stderr


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


# -- HTTP, over HTTP/1.1 and HTTP/2 --------------------------------------------------------


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_pages_render(site: ChatSite, version: str) -> None:
    with site.http(version) as client:
        index = client.get("/")
        assert index.http_version == version
        assert index.status_code == 200
        assert "Pick a room" in index.text and 'name="csrfmiddlewaretoken"' in index.text
        room = client.get("/chat/lobby/")
        assert room.status_code == 200
        assert '<script id="room-name" type="application/json">"lobby"</script>' in room.text
        assert '<script src="/static/rooms/chat.js">' in room.text
        assert client.get("/chat/not a room/").status_code == 404


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_request_is_secure_with_the_client_address(site: ChatSite, version: str) -> None:
    with site.http(version) as client:
        report = client.get("/demo/whoami/").json()
    assert report == {
        "is_secure": True,
        "scheme": "https",
        "remote_addr": "127.0.0.1",
        "host": f"localhost:{site.port}",
        "http_version": version.removeprefix("HTTP/"),
    }


@pytest.mark.parametrize("version", ["HTTP/1.1", pytest.param("HTTP/2", marks=pytest.mark.slow)])
def test_20_mb_upload_arrives_intact(site: ChatSite, version: str) -> None:
    body = os.urandom(UPLOAD_SIZE)
    with site.http(version) as client:
        response = client.post("/demo/upload/", content=body, headers={"content-type": "application/octet-stream"})
    assert response.http_version == version
    assert response.status_code == 200
    assert response.json() == {"size": UPLOAD_SIZE, "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_streaming_view_arrives_in_pieces(site: ChatSite, version: str) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with site.http(version) as client, client.stream("GET", "/demo/stream/") as response:
        assert response.http_version == version
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic(), chunk))
    body = b"".join(chunk for _, chunk in arrivals)
    assert body == b"".join(b"piece %d of 5\n" % number for number in range(1, 6))
    # Five pieces 0.2 s apart: each is sent when the view yields it, not all at the end.
    assert len(arrivals) >= 3, arrivals
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_view_that_raises_gives_500_and_the_next_request_works(site: ChatSite, version: str) -> None:
    with site.http(version) as client:
        failed = client.get("/demo/error/")
        assert failed.status_code == 500
        assert "this view fails on purpose" in failed.text  # DEBUG's technical page
        after = client.get("/demo/whoami/")
        assert after.status_code == 200
        assert after.http_version == version


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_csrf_protected_form(site: ChatSite, version: str) -> None:
    room = f"csrf-{version[-1]}-{os.urandom(3).hex()}"
    with site.http(version) as client:
        token = csrf_token(client.get("/").text)
        assert client.cookies.get("csrftoken")
        origin = {"origin": site.base}
        created = client.post("/", data={"name": room, "csrfmiddlewaretoken": token}, headers=origin)
        assert created.status_code == 302
        assert created.headers["location"] == f"/chat/{room}/"
        assert f'href="/chat/{room}/"' in client.get("/").text
        # Without the token: refused, with the cookie or without it, whatever the Origin says.
        assert client.post("/", data={"name": room + "-x"}, headers=origin).status_code == 403
    with site.http(version) as fresh:
        assert fresh.post("/", data={"name": room + "-y", "csrfmiddlewaretoken": token}).status_code == 403


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_admin_login(site: ChatSite, version: str) -> None:
    with site.http(version) as client:
        page = client.get("/admin/login/?next=/admin/")
        assert page.status_code == 200
        assert '<form action="/admin/login/?next=/admin/" method="post" id="login-form">' in page.text
        form = {
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
            "csrfmiddlewaretoken": csrf_token(page.text),
        }
        logged_in = client.post("/admin/login/?next=/admin/", data=form, headers={"origin": site.base})
        assert logged_in.status_code == 302 and logged_in.headers["location"] == "/admin/"
        admin = client.get("/admin/")
        assert admin.status_code == 200
        assert "Site administration" in admin.text and "Chat rooms" in admin.text


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_static_files_in_debug(site: ChatSite, version: str) -> None:
    static = CHAT_DIR / "rooms" / "static" / "rooms"
    with site.http(version) as client:
        script = client.get("/static/rooms/chat.js")
        style = client.get("/static/rooms/chat.css")
        admin_style = client.get("/static/admin/css/base.css")
        missing = client.get("/static/rooms/missing.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert script.content == (static / "chat.js").read_bytes()
    assert style.status_code == 200
    assert style.headers["content-type"].split(";")[0] == "text/css"
    assert style.content == (static / "chat.css").read_bytes()
    assert admin_style.status_code == 200
    assert missing.status_code == 404


def test_static_files_served_by_asgigw_with_debug_off(chat_env: dict[str, str], cert_files: CertFiles) -> None:
    if "--static" not in run_gateway("--help", plain=False).stdout:
        pytest.skip("this asgigw has no --static option")
    env = {**chat_env, "DJANGO_DEBUG": "0"}
    manage(env, "collectstatic", "--noinput", "-v", "0")
    static_root = env["CHAT_STATIC_ROOT"]
    with start_site(env, cert_files, "--static", f"/static/={static_root}") as server:
        base = f"https://localhost:{port_of(server)}"
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        with httpx.Client(base_url=base, verify=context, timeout=15, trust_env=False) as client:
            script = client.get("/static/rooms/chat.js")
            failed = client.get("/demo/error/")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert script.content == (CHAT_DIR / "rooms" / "static" / "rooms" / "chat.js").read_bytes()
    assert failed.status_code == 500
    assert "this view fails on purpose" not in failed.text  # no technical page with DEBUG off


# -- WebSocket ------------------------------------------------------------------------------


async def receive_json(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT)
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def welcome(ws: ClientConnection, room: str) -> dict[str, Any]:
    """The consumer's first message, checked; returns it."""
    greeting = await receive_json(ws)
    assert greeting["type"] == "welcome" and greeting["room"] == room
    return greeting


async def nothing_arrives(ws: ClientConnection, within: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        return True
    return False


def test_chat_reaches_the_room_and_only_the_room(site: ChatSite) -> None:
    room = f"lobby-{os.urandom(3).hex()}"

    async def chat() -> None:
        async with (
            site.websocket(room) as alice,
            site.websocket(room) as bob,
            site.websocket(f"{room}-elsewhere") as carol,
        ):
            for ws in (alice, bob):
                greeting = await welcome(ws, room)
                assert greeting["scheme"] == "wss"
                assert greeting["http_version"] == "1.1"
                assert greeting["user"] is None
            await welcome(carol, f"{room}-elsewhere")
            await alice.send(json.dumps({"message": "hello, room", "name": "alice"}))
            expected = {"type": "message", "room": room, "author": "alice", "message": "hello, room"}
            assert await receive_json(alice) == expected
            assert await receive_json(bob) == expected
            await bob.send(json.dumps({"message": "hi alice"}))
            assert (await receive_json(alice))["author"] == "anonymous"
            assert (await receive_json(bob))["message"] == "hi alice"
            # Input the consumer refuses gets an error reply; the socket stays open.
            await bob.send("not json")
            assert (await receive_json(bob))["type"] == "error"
            await bob.send(json.dumps({"message": "  "}))
            assert (await receive_json(bob))["type"] == "error"
            assert await nothing_arrives(carol)
            assert await nothing_arrives(alice, 0.1)

    asyncio.run(chat())
    # Messages are stored: the room page shows them to the next visitor.
    with site.http("HTTP/1.1") as client:
        page = client.get(f"/chat/{room}/").text
    assert "<b>alice</b> hello, room" in page and "<b>anonymous</b> hi alice" in page


def test_websocket_origin_must_be_an_allowed_host(site: ChatSite) -> None:
    async def attempts() -> None:
        for origin in ("https://evil.example", None):
            with pytest.raises(InvalidStatus) as refused:
                async with site.websocket("lobby", origin=origin):
                    pass
            assert refused.value.response.status_code == 403

    asyncio.run(attempts())


def test_form_post_reaches_websockets_and_session_user_is_known(site: ChatSite) -> None:
    room = f"form-{os.urandom(3).hex()}"

    async def scenario() -> None:
        async with httpx.AsyncClient(
            base_url=site.base, verify=site.ssl_context(), http2=True, timeout=15, trust_env=False
        ) as client:
            page = await client.get("/admin/login/")
            form = {"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": csrf_token(page.text)}
            origin = {"origin": site.base}
            assert (await client.post("/admin/login/", data=form, headers=origin)).status_code == 302
            cookie = f"sessionid={client.cookies['sessionid']}"
            async with (
                site.websocket(room, additional_headers={"cookie": cookie}) as admin,
                site.websocket(room) as guest,
            ):
                assert (await welcome(admin, room))["user"] == "admin"
                assert (await welcome(guest, room))["user"] is None
                # A logged-in user's messages carry the user name, not the name sent.
                await admin.send(json.dumps({"message": "from the admin", "name": "someone else"}))
                assert (await receive_json(guest))["author"] == "admin"
                assert (await receive_json(admin))["author"] == "admin"
                # The no-JavaScript form: an HTTP view sends to the room's group.
                room_page = await client.get(f"/chat/{room}/")
                posted = await client.post(
                    f"/chat/{room}/post/",
                    data={"author": "form", "text": "over HTTP", "csrfmiddlewaretoken": csrf_token(room_page.text)},
                    headers=origin,
                )
                assert posted.status_code == 302
                expected = {"type": "message", "room": room, "author": "form", "message": "over HTTP"}
                assert await receive_json(guest) == expected
                assert await receive_json(admin) == expected

    asyncio.run(scenario())


def test_200_websockets_in_one_room_all_get_the_broadcast(site: ChatSite) -> None:
    room = f"crowd-{os.urandom(3).hex()}"

    async def crowd() -> None:
        async def join() -> ClientConnection:
            ws = await site.websocket(room, compression=None)
            await welcome(ws, room)
            return ws

        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*(join() for _ in range(CROWD)), return_exceptions=True), 20)
        sockets = [ws for ws in results if isinstance(ws, ClientConnection)]
        try:
            failures = [result for result in results if not isinstance(result, ClientConnection)]
            assert not failures, f"{len(failures)} of {CROWD} failed to connect, first: {failures[0]!r}"
            await sockets[0].send(json.dumps({"message": "to everyone", "name": "crowd"}))
            received = await asyncio.wait_for(asyncio.gather(*(receive_json(ws) for ws in sockets)), 15)
            assert all(message["message"] == "to everyone" for message in received)
            assert time.monotonic() - started < 20
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    asyncio.run(crowd())


def node_with_websocket() -> list[str] | None:
    """A Node.js command line with a global WebSocket (built in from Node 22, a flag in 20-21)."""
    node = shutil.which("node")
    if node is None:
        return None
    for flags in ([], ["--experimental-websocket"]):
        check = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
        probe = subprocess.run([node, *flags, "-e", check], capture_output=True, timeout=15)
        if probe.returncode == 0:
            return [node, *flags]
    return None


def test_room_page_script_chats(site: ChatSite, cert_files: CertFiles) -> None:
    node = node_with_websocket()
    if node is None:
        pytest.skip("no Node.js with a WebSocket client to run the room page's script")
    room = f"page-{os.urandom(3).hex()}"
    arguments = [str(PAGE_HARNESS), str(PAGE_SCRIPT), f"localhost:{site.port}", room, "from the page script"]

    async def scenario() -> None:
        async with site.websocket(room) as listener:
            await welcome(listener, room)
            process = await asyncio.create_subprocess_exec(
                *node,
                *arguments,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "NODE_EXTRA_CA_CERTS": str(cert_files.ca)},
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), 20)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.returncode == 0, (out + err).decode()
            report = json.loads(out.decode().splitlines()[-1])
            assert report == {"status": "connected over wss", "log": ["node from the page script"]}
            expected = {"type": "message", "room": room, "author": "node", "message": "from the page script"}
            assert await receive_json(listener) == expected

    asyncio.run(scenario())


def h2_websocket(client: H2WebSocketClient, site: ChatSite, room: str) -> tuple[int, int]:
    """Open a WebSocket stream by extended CONNECT (RFC 8441 §4), with an Origin header."""
    stream_id = client.h2.get_next_available_stream_id()
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", f"/ws/chat/{room}/".encode()),
        (b":authority", f"localhost:{site.port}".encode()),
        (b"sec-websocket-version", b"13"),
        (b"origin", site.base.encode()),
    ]
    client.h2.send_headers(stream_id, headers)
    client.sock.sendall(client.h2.data_to_send())
    for _ in range(100):
        for event in client.pending:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                client.pending.remove(event)
                client.frames[stream_id] = FrameConnection(ConnectionType.CLIENT)
                return stream_id, int(dict(event.headers or ())[b":status"])
        client._read()
    raise AssertionError("no response to the extended CONNECT")


def h2_receive_json(client: H2WebSocketClient, stream_id: int) -> dict[str, Any]:
    (event,) = client.events(stream_id, 1)
    assert isinstance(event, TextMessage) and event.message_finished, event
    decoded: dict[str, Any] = json.loads(event.data)
    return decoded


def test_websocket_over_http2_joins_the_same_room(site: ChatSite) -> None:
    room = f"h2-{os.urandom(3).hex()}"
    context = site.ssl_context(alpn=["h2"])
    with socket.create_connection(("127.0.0.1", site.port), timeout=RECEIVE_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            client = H2WebSocketClient(sock, "https")
            stream_id, status = h2_websocket(client, site, room)
            assert status == 200
            greeting = h2_receive_json(client, stream_id)
            assert greeting["scheme"] == "wss" and greeting["http_version"] == "2"

            async def from_http1() -> dict[str, Any]:
                async with site.websocket(room) as ws:
                    await welcome(ws, room)
                    await ws.send(json.dumps({"message": "across versions", "name": "h1"}))
                    return await receive_json(ws)

            assert asyncio.run(from_http1())["message"] == "across versions"
            assert h2_receive_json(client, stream_id)["author"] == "h1"
            client.send(stream_id, TextMessage(data=json.dumps({"message": "back over h2", "name": "h2"})))
            assert h2_receive_json(client, stream_id) == {
                "type": "message",
                "room": room,
                "author": "h2",
                "message": "back over h2",
            }
            client.send(stream_id, CloseConnection(code=1000))
            (closing,) = client.events(stream_id, 1)
            assert isinstance(closing, CloseConnection) and closing.code == 1000


# -- Shutdown -------------------------------------------------------------------------------


def test_sigterm_lets_a_slow_request_finish_then_exits_0(chat_env: dict[str, str], cert_files: CertFiles) -> None:
    with start_site(chat_env, cert_files) as server:
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        base = f"https://localhost:{port_of(server)}"
        with (
            httpx.Client(base_url=base, verify=context, timeout=15, trust_env=False) as client,
            client.stream("GET", "/demo/slow/?seconds=1.5") as response,
        ):
            assert response.status_code == 200
            pieces = response.iter_text()
            # The first line proves that the request reached the view before the signal.
            assert next(pieces) == "sleeping 1.5 s\n"
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait_for(r"shutting down \(waiting up to")
            assert "".join(pieces) == "slept 1.5 s\n"
            assert time.monotonic() - signalled >= 1.0
        assert server.wait(10) == 0
    assert "Traceback" not in server.stderr
