"""The Windows tier: asgigw on the real Windows CPython 3.12 (under Wine), driven from Linux.

Skipped unless ``ASGIGW_WINPY`` names a folder built by ``.ci/windows-setup.sh``. The server
runs as ``python.sh DIR -m gateway ...`` (Proactor loop, Windows ``_ssl``), and httpx on
Linux talks to it over 127.0.0.1. Wine cannot deliver Ctrl+C, so a server is stopped by
killing its process group and ``wineserver -k``; the graceful path (a shutdown signal ->
``signal.signal`` fallback -> loop) is checked inside Windows Python by native_checks.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CertFiles

REPO = Path(__file__).resolve().parents[2]
PYTHON_SH = REPO.parent / "shared" / "windows" / "python.sh"
WINPY = os.environ.get("ASGIGW_WINPY", "")
# Wine's first start in a prefix takes several seconds; later ones about three.
READY_TIMEOUT = 60.0


def _built(folder: str) -> bool:
    return bool(folder) and (Path(folder) / "py" / "python.exe").is_file() and (Path(folder) / "prefix").is_dir()


pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(not _built(WINPY), reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh"),
]


def asgigw_argv(port: int, *options: str, tls: bool = False) -> list[str]:
    """Arguments for ``python -m gateway`` serving examples/hello.py on 127.0.0.1:``port``.

    The one place CLI arguments are built: plain HTTP needs ``--no-tls`` (without it and
    without --cert the CLI serves HTTPS with a development certificate).
    """
    argv = ["-m", "gateway", "--app-dir", "examples", "hello:app", "--port", str(port), "--no-access-log"]
    return argv + list(options) + ([] if tls else ["--no-tls"])


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A new client context trusting ``ca_file`` (httpx sets ALPN on the context it gets,
    so the session-wide ``cert_files.client_context`` is not handed to it)."""
    return ssl.create_default_context(cafile=ca_file)


def wine_environment() -> dict[str, str]:
    """The environment python.sh sets, so ``wineserver`` acts on the same Wine prefix."""
    return {**os.environ, "WINEPREFIX": str(Path(WINPY).resolve() / "prefix"), "WINEDEBUG": "-all"}


def stop_wine() -> None:
    """End every process of the tier's Wine prefix (Wine cannot deliver Ctrl+C)."""
    subprocess.run(["wineserver", "-k"], env=wine_environment(), timeout=30, check=False)


def port_accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def wine_stopped_afterwards() -> Iterator[None]:
    """Whatever happens, leave no Wine process of this prefix running after the module."""
    if not PYTHON_SH.is_file():
        pytest.fail(f"ASGIGW_WINPY is set but {PYTHON_SH} is missing")
    yield
    stop_wine()


@contextlib.contextmanager
def windows_server(argv: list[str], port: int, log_path: Path) -> Iterator[Path]:
    """Run asgigw on the Windows Python until the block ends; yield its log file."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(PYTHON_SH), WINPY, *argv],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"asgigw on Windows Python did not start (exit {process.poll()}):\n{log_path.read_text()}")
            time.sleep(0.25)
        yield log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stop_wine()
        process.wait(30)
    assert not port_accepts(port), "the Windows server still listens after being stopped"


def test_plain_http(tmp_path: Path) -> None:
    port = free_port()
    with windows_server(asgigw_argv(port), port, tmp_path / "server.log") as log_path:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            # Several requests on one keep-alive connection through the Proactor transport.
            responses = [client.get("/", headers={"x-request": str(number)}) for number in range(3)]
        # HTTP/2 with prior knowledge (h2c, RFC 9113 section 3.3) on the same listener.
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            cleartext_http2 = client.get(f"http://127.0.0.1:{port}/")
        log = log_path.read_text()
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert {response.text for response in responses} == {"Hello, world!\n"}
    assert {response.http_version for response in responses} == {"HTTP/1.1"}
    assert (cleartext_http2.http_version, cleartext_http2.text) == ("HTTP/2", "Hello, world!\n")
    assert f"asgigw serving http://127.0.0.1:{port}" in log


def test_https_with_certificate_files(tmp_path: Path, cert_files: CertFiles) -> None:
    port = free_port()
    # Both path forms: a Linux absolute path (the Windows Python resolves /tmp/... on the
    # current drive, Z:, where Wine maps /) and a Windows drive path.
    key = "Z:" + str(cert_files.key).replace("/", "\\")
    argv = asgigw_argv(port, "--cert", str(cert_files.cert), "--key", key, tls=True)
    with windows_server(argv, port, tmp_path / "server.log") as log_path:
        with httpx.Client(verify=trusting(cert_files.ca), timeout=10) as client:
            by_name = client.get(f"https://localhost:{port}/")
            by_address = client.get(f"https://127.0.0.1:{port}/")
        # HTTP/2 chosen by ALPN over the Windows _ssl and Proactor transport.
        with httpx.Client(verify=trusting(cert_files.ca), http2=True, timeout=10) as client:
            over_http2 = [client.get(f"https://localhost:{port}/") for _ in range(2)]
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as untrusting:
            untrusting.get(f"https://localhost:{port}/")
        log = log_path.read_text()
    assert (by_name.status_code, by_name.text) == (200, "Hello, world!\n")
    assert (by_address.status_code, by_address.text) == (200, "Hello, world!\n")
    assert by_name.http_version == "HTTP/1.1"
    assert [(response.http_version, response.text) for response in over_http2] == [("HTTP/2", "Hello, world!\n")] * 2
    assert f"asgigw serving https://127.0.0.1:{port}" in log


def test_https_with_development_certificate(tmp_path: Path) -> None:
    port = free_port()
    ca_dir = tmp_path / "dev-ca"
    with windows_server(asgigw_argv(port, "--ca-dir", str(ca_dir), tls=True), port, tmp_path / "server.log"):
        # The Windows Python wrote the dev CA and leaf into a Linux folder through Z:.
        with httpx.Client(verify=trusting(ca_dir / "ca.pem"), timeout=10) as client:
            response = client.get(f"https://localhost:{port}/")
    assert (response.status_code, response.text) == (200, "Hello, world!\n")


def test_port_in_use_is_reported_and_exits_2() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        completed = subprocess.run(
            ["bash", str(PYTHON_SH), WINPY, *asgigw_argv(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    # With SO_REUSEADDR set (a POSIX habit) Windows semantics differ and Wine reports
    # "access denied" here; platform.reuse_address() leaves it off on Windows.
    assert completed.returncode == 2, completed.stdout
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in completed.stdout


def test_native_checks_inside_windows_python() -> None:
    completed = subprocess.run(
        ["bash", str(PYTHON_SH), WINPY, "tests/windows/native_checks.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.rstrip().endswith("native checks passed"), completed.stdout
    assert "ok: install_signal_handlers set signal.signal handlers" in completed.stdout
    assert "ok: SIGBREAK shut the server down gracefully (exit code 0)" in completed.stdout
