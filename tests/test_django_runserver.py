"""``python manage.py runserver`` with ``gateway.django`` installed: a real Django Channels
project (tests/apps/django_project.py) in a temporary folder, run as a subprocess.

HTTPS with the development CA (conftest points ASGIGW_CA_DIR at a temporary folder), HTTP/2,
WebSocket over wss, static files as Django serves them, --no-tls, --cert/--key, one-line
errors, the autoreloader restarting on an edit, and graceful exits on SIGTERM and Ctrl+C.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from tests.apps.django_project import STATIC_TEXT, ManageProcess, manage_process, set_greeting, write_project
from tests.apps.process import ROOT, free_port
from tests.conftest import CertFiles

pytest.importorskip("django")
pytest.importorskip("channels")

RELOAD_TIMEOUT = 20.0
DOC = ROOT / "docs" / "django-runserver.md"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the test project."""
    return write_project(tmp_path / "project")


def dev_ca(isolated_dev_ca: Path) -> ssl.SSLContext:
    """A new client context trusting the development CA the server created (a new one each
    time: httpx sets ALPN h2 on the context it is given, which a WebSocket client must not get)."""
    return ssl.create_default_context(cafile=isolated_dev_ca / "ca.pem")


async def chat_round_trip(url: str, context: ssl.SSLContext | None) -> list[str]:
    """Two clients in one room; what each receives after the first one says hello."""
    async with websockets.connect(url, ssl=context) as alice, websockets.connect(url, ssl=context) as bob:
        await alice.send("hello, room")
        return [await asyncio.wait_for(alice.recv(), 5), await asyncio.wait_for(bob.recv(), 5)]  # type: ignore[list-item]


def run_manage(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` expected to exit by itself (errors)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_importing_gateway_does_not_import_django() -> None:
    code = "import sys, gateway, gateway.cli, gateway.server; sys.exit('django' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


# Options every Django command has; the rest of ``runserver --help`` is ours to document.
DJANGO_COMMON_OPTIONS = {"-h", "--help", "--version", "--settings", "--pythonpath", "--no-color", "--force-color"}


def test_every_option_is_documented(project: Path) -> None:
    result = run_manage(project, "runserver", "--help")
    assert result.returncode == 0, result.stderr
    listed = {"addrport"} if re.search(r"^  addrport ", result.stdout, re.MULTILINE) else set()
    for line in result.stdout.splitlines():
        match = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)  # an option line: "  --ipv6, -6   help"
        if match:
            listed |= set(re.findall(r"(?<![\w-])--?[a-z0-9][a-z0-9-]*", match.group(1)))
    documented = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`(--[a-z0-9-]+|-\w|addrport)[ `]", line.split("|")[1]))
    expected = {"addrport", "--ipv6", "-6", "--nothreading", "--noreload", "--nostatic", "--insecure"}
    expected |= {"--cert", "--key", "--no-tls", "--skip-checks"}
    assert expected <= listed, sorted(expected - listed)
    assert listed - DJANGO_COMMON_OPTIONS <= documented, sorted(listed - DJANGO_COMMON_OPTIONS - documented)


def test_https_http2_websocket_static_and_sigterm(project: Path, isolated_dev_ca: Path) -> None:
    with manage_process(project, "runserver", "127.0.0.1:0", "--noreload") as server:
        url = server.wait_serving()
        assert url.startswith("https://127.0.0.1:")
        context = dev_ca(isolated_dev_ca)
        with httpx.Client(verify=context, http2=True, timeout=10) as client:
            page = client.get(f"{url}/")
            static = client.get(f"{url}/static/site.css")
        assert (page.status_code, page.http_version, page.text) == (200, "HTTP/2", "hello v1 https")
        assert (static.status_code, static.text) == (200, STATIC_TEXT)
        wss = url.replace("https://", "wss://") + "/ws/chat/lobby/"
        assert asyncio.run(chat_round_trip(wss, dev_ca(isolated_dev_ca))) == ["hello, room", "hello, room"]
        server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "Django version" in server.output and "using settings 'site_project.settings'" in server.output
    assert "shutting down" in server.output
    assert "Traceback" not in server.output


def test_nostatic_and_plain_http(project: Path) -> None:
    args = ("runserver", "127.0.0.1:0", "--noreload", "--nostatic", "--no-tls", "--nothreading")
    with manage_process(project, *args) as server:
        url = server.wait_serving()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/").text == "hello v1 http"
        assert httpx.get(f"{url}/static/site.css").status_code == 404
        ws = url.replace("http://", "ws://") + "/ws/chat/lobby/"
        assert asyncio.run(chat_round_trip(ws, None)) == ["hello, room", "hello, room"]


@pytest.mark.parametrize(("loop", "parser"), [("asyncio", "h11"), ("uvloop", "httptools")], ids=["pure", "fast-extra"])
def test_loop_and_parser_options(project: Path, loop: str, parser: str) -> None:
    args = ("runserver", "127.0.0.1:0", "--noreload", "--no-tls", "--loop", loop, "--http1-parser", parser)
    with manage_process(project, *args) as server:
        url = server.wait_serving()
        assert httpx.get(f"{url}/").text == "hello v1 http"
        server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert f"{loop} loop, {parser} parser" in server.output


def test_without_asgi_application_django_itself_is_served(project: Path) -> None:
    args = ("runserver", "127.0.0.1:0", "--noreload", "--no-tls")
    with manage_process(project, *args, SITE_PLAIN_DJANGO="1") as server:
        url = server.wait_serving()
        assert httpx.get(f"{url}/").text == "hello v1 http"
        assert httpx.get(f"{url}/static/site.css").text == STATIC_TEXT
        # Django's ASGIHandler has no WebSocket: the handshake fails without reaching Channels.
        with pytest.raises(websockets.InvalidHandshake):
            asyncio.run(chat_round_trip(url.replace("http://", "ws://") + "/ws/chat/lobby/", None))


def test_static_files_without_debug_need_insecure(project: Path) -> None:
    for extra, expected in (((), 404), (("--insecure",), 200)):
        args = ("runserver", "127.0.0.1:0", "--noreload", "--no-tls", *extra)
        with manage_process(project, *args, SITE_DEBUG="0") as server:
            url = server.wait_serving()
            assert httpx.get(f"{url}/static/site.css").status_code == expected, extra


def test_certificate_files(project: Path, cert_files: CertFiles) -> None:
    args = ("runserver", "127.0.0.1:0", "--noreload", "--cert", str(cert_files.cert), "--key", str(cert_files.key))
    with manage_process(project, *args) as server:
        port = server.wait_serving().rsplit(":", 1)[1]
        # Separate contexts: httpx sets ALPN (h2) on the one it is given.
        with httpx.Client(verify=ssl.create_default_context(cafile=cert_files.ca), http2=True, timeout=10) as client:
            response = client.get(f"https://localhost:{port}/")
        assert (response.http_version, response.text) == ("HTTP/2", "hello v1 https")
        wss = f"wss://localhost:{port}/ws/chat/a/"
        assert asyncio.run(chat_round_trip(wss, cert_files.client_context))[1] == "hello, room"


def test_ipv6_address_port(project: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    for addrport in (("[::1]:0",), ("-6", "0")):  # explicit, and --ipv6 with a port only
        with manage_process(project, "runserver", *addrport, "--noreload", "--no-tls") as server:
            url = server.wait_serving()
            assert url.startswith("http://[::1]:")
            assert httpx.get(f"{url}/").text == "hello v1 http"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("127.0.0.1:http",), "is not a valid port number or address:port pair"),
        (("127.0.0.1:99999",), "--port 99999: must be a number from 0 to 65535"),
        (("127.0.0.1:0", "--cert", "missing.pem", "--key", "k.pem"), "certificate file not found: missing.pem"),
        (("127.0.0.1:0", "--cert", "only.pem"), "--cert and --key must be given together"),
        (
            ("127.0.0.1:0", "--no-tls", "--cert", "c.pem", "--key", "k.pem"),
            "--no-tls and --cert/--key exclude each other",
        ),
    ],
)
def test_errors_are_one_line(project: Path, args: tuple[str, ...], message: str) -> None:
    result = run_manage(project, "runserver", "--noreload", *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("CommandError:")]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_port_in_use_is_one_line_under_the_reloader(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_manage(project, "runserver", f"127.0.0.1:{port}", "--no-tls")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"CommandError: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr.splitlines()


def wait_for_text(url: str, expected: str, timeout: float = RELOAD_TIMEOUT) -> None:
    """Poll ``url`` until it answers ``expected`` (the server restarts in between)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).text
        except httpx.HTTPError as exc:
            last = repr(exc)
        if last == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {expected!r} within {timeout}s; last: {last!r}")


def edit_until(server: ManageProcess, edit: Callable[[], None], pattern: str) -> None:
    """Apply ``edit`` until the output shows ``pattern``, again every 2 s: StatReloader
    ignores a change made before it first looked at the file (it polls once a second)."""
    after = len(server.lines)
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        edit()
        try:
            server.wait_for(pattern, timeout=2, after=after)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.slow
def test_autoreloader_restarts_on_edit_and_stops_on_sigterm(project: Path) -> None:
    port = free_port()
    with manage_process(project, "runserver", f"127.0.0.1:{port}", "--no-tls") as server:
        url = server.wait_serving()
        server.wait_for("Watching for file changes with")
        assert httpx.get(f"{url}/").text == "hello v1 http"
        banners = len(server.lines)
        edit_until(server, lambda: set_greeting(project, "hello v2"), r"views\.py changed, reloading")
        # The old server stopped gracefully before the new one bound the same port.
        server.wait_for("shutting down", after=banners)
        server.wait_serving(after=banners)
        wait_for_text(f"{url}/", "hello v2 http")
        server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    # Every server the reloader started (two, or more if an edit was noticed twice) was
    # stopped gracefully, the last one by the SIGTERM the parent passed on.
    started = server.output.count("Starting ASGI development server")
    assert started >= 2 and server.output.count("shutting down") == started
    assert "Traceback" not in server.output


@pytest.mark.slow
def test_autoreloader_waits_for_a_fix_after_an_error(project: Path) -> None:
    port = free_port()
    with manage_process(project, "runserver", f"127.0.0.1:{port}", "--no-tls") as server:
        url = server.wait_serving()
        views = project / "site_project" / "views.py"
        edit_until(server, lambda: views.write_text("def home(:\n", encoding="utf-8"), "SyntaxError")
        server.wait_for("Waiting for a file to change")
        # The failed child watches the file that raised; saving a fix starts a new one.
        edit_until(server, lambda: set_greeting(project, "fixed"), "development server .* at ")
        wait_for_text(f"{url}/", "fixed http")


@pytest.mark.parametrize("ctrl_c", [True, False], ids=["ctrl-c", "sigterm"])
def test_stopping_while_waiting_for_a_fix(project: Path, ctrl_c: bool) -> None:
    with manage_process(project, "runserver", f"127.0.0.1:{free_port()}", "--no-tls") as server:
        server.wait_serving()
        views = project / "site_project" / "views.py"
        edit_until(server, lambda: views.write_text("def home(:\n", encoding="utf-8"), "Waiting for a file to change")
        if ctrl_c:
            os.killpg(server.process.pid, signal.SIGINT)
        else:
            server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "KeyboardInterrupt" not in server.output


def test_ctrl_c_under_the_reloader_stops_both_processes(project: Path) -> None:
    port = free_port()
    with manage_process(project, "runserver", f"127.0.0.1:{port}", "--no-tls") as server:
        url = server.wait_serving()
        assert httpx.get(f"{url}/").status_code == 200
        # A terminal sends Ctrl+C to the whole foreground process group.
        os.killpg(server.process.pid, signal.SIGINT)
        assert server.wait() == 0
    assert server.output.count("shutting down") == 1
    assert "second stop request" not in server.output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/", timeout=2)


def test_system_check_warns_when_staticfiles_comes_first(project: Path) -> None:
    assert "asgigw.W001" not in run_manage(project, "check").stderr
    wrong = run_manage(project, "check", SITE_STATICFILES_FIRST="1")
    assert wrong.returncode == 0  # a warning, not an error: other commands keep working
    assert "?: (asgigw.W001) gateway.django is listed after django.contrib.staticfiles" in wrong.stderr


@pytest.mark.parametrize(("where", "serves"), [("first", "Daphne's"), ("last", "asgigw's")])
def test_system_check_warns_when_daphne_is_still_installed(project: Path, where: str, serves: str) -> None:
    # Django only needs an importable module for an app; Daphne itself is not a test dependency.
    (project / "daphne").mkdir()
    (project / "daphne" / "__init__.py").write_text("")
    assert "asgigw.W002" not in run_manage(project, "check").stderr
    left_over = run_manage(project, "check", SITE_DAPHNE=where)
    assert left_over.returncode == 0, left_over.stderr
    assert (
        f"?: (asgigw.W002) 'daphne' is in INSTALLED_APPS next to gateway.django; 'manage.py runserver' is {serves} server."
        in left_over.stderr
    )
    assert "HINT: Remove 'daphne' from INSTALLED_APPS" in left_over.stderr


def test_the_chat_example(tmp_path: Path, isolated_dev_ca: Path) -> None:
    chat = ROOT / "examples" / "chat"
    env = {
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),
        "CHAT_REDIS_URL": "",
    }
    migrated = run_manage(chat, "migrate", "--noinput", "-v", "0", **env)
    assert migrated.returncode == 0, migrated.stderr
    with manage_process(chat, "runserver", "127.0.0.1:0", "--noreload", **env) as server:
        port = server.wait_serving().rsplit(":", 1)[1]
        base = f"https://localhost:{port}"
        with httpx.Client(verify=dev_ca(isolated_dev_ca), http2=True, timeout=10) as client:
            index = client.get(f"{base}/")
            script = client.get(f"{base}/static/rooms/chat.js")
        assert (index.status_code, index.http_version) == (200, "HTTP/2")
        assert "Pick a room" in index.text
        assert script.status_code == 200

        async def chat() -> list[dict[str, object]]:
            origin = websockets.Origin(base)
            async with websockets.connect(
                f"wss://localhost:{port}/ws/chat/lobby/", ssl=dev_ca(isolated_dev_ca), origin=origin
            ) as client:
                welcome = json.loads(await asyncio.wait_for(client.recv(), 5))
                await client.send(json.dumps({"name": "ada", "message": "hi"}))
                return [welcome, json.loads(await asyncio.wait_for(client.recv(), 5))]

        welcome, message = asyncio.run(chat())
    assert (welcome["type"], welcome["scheme"]) == ("welcome", "wss")
    assert message == {"type": "message", "room": "lobby", "author": "ada", "message": "hi"}
