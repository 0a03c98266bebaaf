"""``--workers 2`` on the real Windows CPython 3.12 (under Wine), driven from Linux.

Skipped unless ``ASGIGW_WINPY`` names a folder built by ``.ci/windows-setup.sh`` (see
test_windows_tier.py). It checks what only Windows can show: the spawned workers receive the
listening socket through ``socket.share()``/``fromshare()``, accept on it from a thread
(the Proactor loop cannot, WinError 87), both answer, and a SIGTERM raised in the
supervisor stops them over their pipes with exit status 0.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import CertFiles
from tests.windows.test_windows_tier import (  # noqa: F401 - the fixture stops Wine afterwards
    PYTHON_SH,
    READY_TIMEOUT,
    REPO,
    WINPY,
    _built,
    free_port,
    port_accepts,
    windows_server,
    wine_stopped_afterwards,
)

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(not _built(WINPY), reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh"),
]

WORKER_READY = re.compile(r"\[worker (\d+)\] worker ready, accepting connections \(accept thread\)")


def wait_for_line(log_path: Path, pattern: str, timeout: float = READY_TIMEOUT) -> str:
    """The log's text once a line matches ``pattern`` (the Windows Python writes it)."""
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"no line matching {pattern!r} in the Windows server's log:\n{text}")
        time.sleep(0.25)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https-h2"])
def test_two_workers_answer(tmp_path: Path, cert_files: CertFiles, tls: bool) -> None:
    port = free_port()
    argv = ["-m", "gateway", "tests.apps.pid:app", "--port", str(port), "--workers", "2"]
    argv += ["--cert", str(cert_files.cert), "--key", str(cert_files.key)] if tls else ["--no-tls"]
    scheme = "https" if tls else "http"
    with windows_server(argv, port, tmp_path / "server.log") as log_path:
        log = wait_for_line(log_path, rf"asgigw serving {scheme}://127\.0\.0\.1:\d+ \(.*2 worker processes\)")

        def one_request(_: int) -> tuple[str, int]:
            # New connections; the app's blocking sleep keeps one worker busy for a moment.
            # Over TLS, HTTP/2 by ALPN: the accept thread hands the socket to the Proactor
            # loop, which does the handshake.
            verify = ssl.create_default_context(cafile=str(cert_files.ca)) if tls else True
            with httpx.Client(verify=verify, http2=tls, timeout=30) as client:
                response = client.get(f"{scheme}://localhost:{port}/?block=0.2")
            assert response.status_code == 200
            return response.http_version, int(response.json()["pid"])

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(one_request, range(12)))
    workers = {int(pid) for pid in WORKER_READY.findall(log)}
    answered = {pid for _, pid in answers}
    assert len(workers) == 2, log
    assert answered <= workers
    assert len(answered) == 2, f"only {answered} of {workers} answered"
    assert {version for version, _ in answers} == {"HTTP/2" if tls else "HTTP/1.1"}


def run_check(*args: str) -> tuple[int, str]:
    """Run tests/windows/workers_check.py on the Windows Python; its exit status and output."""
    completed = subprocess.run(
        ["bash", str(PYTHON_SH), WINPY, "tests/windows/workers_check.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


def test_sigterm_stops_both_workers_over_their_pipes() -> None:
    returncode, output = run_check(str(free_port()))
    assert returncode == 0, output
    assert output.rstrip().endswith("workers check passed"), output
    assert re.search(r"answered by worker pids \[\d+, \d+\] \((\d+) requests, \1 sent\)", output), output
    assert len(re.findall(r"\[worker \d+\] stop requested by the supervisor", output)) == 2, output
    assert "supervisor exited with 0" in output


def test_workers_of_a_vanished_supervisor_exit_by_themselves() -> None:
    port = free_port()
    # python.sh returns once every writer of its output pipe has gone: the workers too.
    returncode, output = run_check(str(port), "orphan")
    assert returncode == 3, output
    assert "supervisor exits abruptly" in output
    gone = re.findall(r"\[worker \d+\] the supervisor has gone away \(its pipe closed\); shutting down", output)
    assert len(gone) == 2, output
    assert len(re.findall(r"app: lifespan shutdown", output)) == 2, output
    assert not port_accepts(port)
