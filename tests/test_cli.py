"""The ``asgigw`` command: every option listed and documented, each option's effect on a real
subprocess server, and app-loading errors (one line, exit code 2)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess

import httpx
import pytest

from gateway.loader import load_app
from tests.apps import basic
from tests.apps.process import ROOT, free_port, gateway_process, run_gateway, wait_for_port

OPTIONS_DOC = ROOT / "docs" / "options.md"
# Options the core server promises (issue "Core server"); others may add more.
CORE_OPTIONS = {
    "--factory",
    "--app-dir",
    "--bind",
    "--host",
    "--port",
    "--cert",
    "--key",
    "--key-password",
    "--root-path",
    "--lifespan",
    "--log-level",
    "--access-log",
    "--no-access-log",
    "--keep-alive-timeout",
    "--header-timeout",
    "--tls-handshake-timeout",
    "--graceful-timeout",
    "--max-header-size",
    "--max-body-size",
    "--backlog",
}
# An option line in click's help starts with two spaces and a dash; its help text is indented more.
HELP_OPTION_LINE = re.compile(r"^  (-\S.*?)(?:\s{2,}|$)")
ACCESS_LINE = re.compile(r'127\.0\.0\.1:(\d+) - "GET /hello\?page=2 HTTP/1\.1" 200 (\d+) (\d+\.\d)ms')


def help_options(text: str) -> set[str]:
    """Every long option named in the option lines of ``--help`` output."""
    options: set[str] = set()
    for line in text.splitlines():
        match = HELP_OPTION_LINE.match(line)
        if match:
            options.update(re.findall(r"--[a-z0-9][a-z0-9-]*", match.group(1)))
    return options


def documented_options(text: str | None = None) -> set[str]:
    """Long options that have a table row in docs/options.md (first column)."""
    if text is None:
        text = OPTIONS_DOC.read_text(encoding="utf-8")
    options: set[str] = set()
    for line in text.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            options.update(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", first_cell))
    return options


def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (or ``timeout``)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


# -- --help ----------------------------------------------------------------------------


def test_help_lists_every_core_option() -> None:
    script = run_gateway("--help", plain=False, script=True)
    module = run_gateway("--help", plain=False)
    assert script.returncode == 0, script.stderr
    assert module.returncode == 0, module.stderr
    assert script.stdout.startswith("Usage: asgigw [OPTIONS] APP")
    assert module.stdout == script.stdout
    missing = CORE_OPTIONS - help_options(script.stdout)
    assert not missing, f"not in --help: {sorted(missing)}"


def test_every_help_option_is_documented() -> None:
    listed = help_options(run_gateway("--help", plain=False).stdout) - {"--help"}
    assert len(listed) >= len(CORE_OPTIONS)
    undocumented = listed - documented_options()
    assert not undocumented, f"add a row to docs/options.md for: {sorted(undocumented)}"


def test_help_parser_sees_option_lines_only() -> None:
    text = "Options:\n  --alpha TEXT  Help that mentions --not-an-option.\n                continued --nor-this\n  -b, --beta / --no-beta\n"
    assert help_options(text) == {"--alpha", "--beta", "--no-beta"}


def test_missing_app_argument_is_a_usage_error() -> None:
    result = run_gateway()
    assert result.returncode == 2
    assert (
        result.stderr
        == "asgigw: error: missing APP, the application to serve (module:attribute, e.g. proj.asgi:application)\n"
    )


# -- listening ---------------------------------------------------------------------------


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_bind_is_repeatable_with_ipv4_and_ipv6() -> None:
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    with gateway_process("--bind", "127.0.0.1:0", "--bind", "[::1]:0", "tests.apps.basic:app") as server:
        urls = server.urls()
        assert len(urls) == 2
        assert urls[0].startswith("http://127.0.0.1:")
        assert urls[1].startswith("http://[::1]:")
        for url in urls:
            assert httpx.get(f"{url}/where").json()["path"] == "/where"


def test_host_port_and_backlog() -> None:
    port = free_port()
    args = ("--host", "127.0.0.1", "--port", str(port), "--backlog", "7", "tests.apps.basic:app")
    with gateway_process(*args) as server:
        assert server.urls() == [f"http://127.0.0.1:{port}"]
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        # For a listening socket, ss reports the backlog in the Send-Q column.
        try:
            listing = subprocess.run(
                ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            pytest.skip("ss is not available to read the listen backlog")
        assert listing[:3] == ["LISTEN", "0", "7"], listing


# -- application -----------------------------------------------------------------------


def test_root_path_and_dotted_attribute() -> None:
    with gateway_process("--port", "0", "--root-path", "/api", "tests.apps.basic:holder.inner.app") as server:
        report = httpx.get(f"{server.url}/items").json()
    assert report["root_path"] == "/api"
    assert report["path"] == "/api/items"
    assert report["scheme"] == "http"


def test_factory() -> None:
    with gateway_process("--port", "0", "--factory", "tests.apps.basic:make_app") as server:
        assert httpx.get(f"{server.url}/made").json()["path"] == "/made"
    result = run_gateway("--factory", "tests.apps.basic:not_callable")
    assert result.returncode == 2
    assert result.stderr == "asgigw: error: --factory: 'tests.apps.basic:not_callable' is not callable\n"


def test_app_dir_option() -> None:
    with gateway_process("--port", "0", "--app-dir", "tests/apps", "basic:app") as server:
        assert httpx.get(server.url).status_code == 200


def test_app_dir_defaults_to_current_directory() -> None:
    # The installed script, unlike ``python -m``, does not put the current directory on
    # sys.path by itself: only the --app-dir default can make ``basic`` importable here.
    apps = ROOT / "tests" / "apps"
    with gateway_process("--port", "0", "basic:app", script=True, cwd=apps) as server:
        assert httpx.get(server.url).status_code == 200
    result = run_gateway("basic:app", script=True, cwd=ROOT)
    assert result.returncode == 2
    assert "could not import module 'basic'" in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps.no_such_module:app", "could not import module 'tests.apps.no_such_module' (looked in .)"),
        (
            "tests.apps.missing_dependency:app",
            "error importing 'tests.apps.missing_dependency': No module named 'asgigw_test_no_such_dependency'",
        ),
        ("tests.apps.basic:no_such_app", "attribute 'no_such_app' not found in module 'tests.apps.basic'"),
        ("tests.apps.basic:holder.inner.nope", "attribute 'holder.inner.nope' not found in module 'tests.apps.basic'"),
        ("tests.apps.basic:not_callable", "'tests.apps.basic:not_callable' is not an ASGI application (not callable)"),
        ("tests.apps.basic", "APP must look like 'module:attribute'"),
    ],
)
def test_app_loading_errors_are_one_line(target: str, message: str) -> None:
    result = run_gateway(target)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asgigw: error: ")
    assert message in lines[0]


def test_app_module_that_raises_while_importing() -> None:
    result = run_gateway("tests.apps.broken_import:app")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    # The app's own exception keeps its traceback (it is the app's bug), and the last
    # line says in one line what went wrong.
    assert "broken_import.py" in result.stderr
    assert [line for line in lines if line.startswith("asgigw: error:")] == [lines[-1]]
    assert lines[-1].startswith("asgigw: error: error importing 'tests.apps.broken_import")
    assert lines[-1].endswith("RuntimeError: broken_import fails on purpose while importing")


def test_load_app_dotted_path_in_process() -> None:
    assert load_app("tests.apps.basic:holder.inner.app") is basic.app
    assert load_app("tests.apps.basic:make_app", factory=True) is basic.app


# -- logging -------------------------------------------------------------------------


def test_access_log_lines_on_stderr() -> None:
    with gateway_process("--port", "0", "tests.apps.basic:app") as server:
        response = httpx.get(f"{server.url}/hello?page=2")
        match = server.wait_for(ACCESS_LINE.pattern)
    assert int(match.group(2)) == len(response.content)
    assert float(match.group(3)) >= 0.0


def test_no_access_log() -> None:
    with gateway_process("--port", "0", "--no-access-log", "tests.apps.basic:app") as server:
        assert httpx.get(f"{server.url}/hello?page=2").status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "[INFO]" in server.stderr  # logging itself is on
    assert '"GET /hello' not in server.stderr


def test_log_level_warning_hides_info_lines() -> None:
    port = free_port()
    with gateway_process(
        "--port", str(port), "--log-level", "warning", "tests.apps.basic:app", wait_serving=False
    ) as server:
        wait_for_port(port)
        assert httpx.get(f"http://127.0.0.1:{port}/hello?page=2").status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "serving" not in server.stderr
    assert "[INFO]" not in server.stderr
    assert '"GET /hello' not in server.stderr


def test_log_level_debug_shows_debug_lines() -> None:
    args = ("--port", "0", "--log-level", "debug", "tests.apps.basic:django_like")
    with gateway_process(*args) as server:
        server.wait_for(r"\[DEBUG\] exception in lifespan \(treated as unsupported\)")
    with gateway_process("--port", "0", "tests.apps.basic:django_like") as server:
        assert httpx.get(server.url).status_code == 200
    assert "[DEBUG]" not in server.stderr


# -- timeouts and sizes (light checks; the HTTP/1.1 tests go deeper) ---------------------


def test_timeouts_and_size_limits() -> None:
    args = (
        *("--port", "0", "--keep-alive-timeout", "0.5", "--header-timeout", "0.5"),
        *("--max-header-size", "1024", "--max-body-size", "10", "tests.apps.basic:app"),
    )
    with gateway_process(*args) as server:
        port = int(server.url.rsplit(":", 1)[1])
        head = b"GET / HTTP/1.1\r\nHost: t\r\n"
        # Keep-alive: the response comes, then the server closes the idle connection well
        # before the 5 s default (raw_exchange reads with a 3 s timeout).
        assert raw_exchange(port, head + b"\r\n").startswith(b"HTTP/1.1 200 ")
        # Header timeout: an unfinished head is dropped.
        assert b"200" not in raw_exchange(port, head)
        big = head + b"X-Filler: " + b"a" * 1100 + b"\r\nConnection: close\r\n\r\n"
        assert raw_exchange(port, big).startswith(b"HTTP/1.1 431 ")
        post = b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
        assert raw_exchange(port, post % 11 + b"a" * 11).startswith(b"HTTP/1.1 413 ")
        assert raw_exchange(port, post % 10 + b"a" * 10).startswith(b"HTTP/1.1 200 ")


def test_option_values_are_type_checked_by_click() -> None:
    result = run_gateway("--keep-alive-timeout", "soon", "tests.apps.basic:app")
    assert result.returncode == 2
    assert "'soon' is not a valid float" in result.stderr


def test_documented_options_come_from_the_first_column_only() -> None:
    table = "| `--alpha` / `--no-alpha` | 1 | alpha | Needs --gamma. |\n| --beta, `-b` | 2 | beta | x |\nSee --delta.\n"
    assert documented_options(table) == {"--alpha", "--no-alpha", "--beta"}
    assert {"--access-log", "--no-access-log", "--bind", "--no-tls"} <= documented_options()
