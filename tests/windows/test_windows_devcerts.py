"""Windows tier for local HTTPS: on the Windows CPython (under Wine) asgigw creates the dev CA
and leaf in %LOCALAPPDATA%\\asgigw and serves HTTPS with them; Linux httpx checks it.

Skipped unless ``ASGIGW_WINPY`` names a folder built by ``.ci/windows-setup.sh``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path, PureWindowsPath

import httpx
import pytest
import trustme
from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SH = ROOT.parent / "shared" / "windows" / "python.sh"
WINPY = os.environ.get("ASGIGW_WINPY", "")

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(
        not (WINPY and Path(WINPY, "py", "python.exe").exists() and PYTHON_SH.exists()),
        reason="set ASGIGW_WINPY to a folder built by .ci/windows-setup.sh",
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _linux_path(windows_path: str) -> Path:
    """Map ``C:\\users\\...`` inside the Wine prefix to its Linux path."""
    path = PureWindowsPath(windows_path)
    assert path.drive.upper() == "C:", windows_path
    return Path(WINPY, "prefix", "drive_c", *path.parts[1:])


def test_dev_certificate_on_windows_python() -> None:
    port = _free_port()
    # No ASGIGW_CA_DIR: the Windows default folder under %LOCALAPPDATA% is what is tested.
    environ = {key: value for key, value in os.environ.items() if key != "ASGIGW_CA_DIR"}
    command = ["bash", str(PYTHON_SH), WINPY, "-m", "gateway", "--app-dir", "examples", "--port", str(port)]
    command += ["--no-access-log", "hello:app"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    ca_folder: Path | None = None
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("development certificate" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert f"serving https://127.0.0.1:{port}" in text, text
        match = re.search(r"issued by the local CA (\S+ca\.pem)", text)
        assert match is not None, text
        windows_ca = match.group(1).rstrip(";")
        assert "\\AppData\\Local\\asgigw\\" in windows_ca
        ca_file = _linux_path(windows_ca)
        ca_folder = ca_file.parent
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file))) as client:
            response = client.get(f"https://localhost:{port}/")
        assert response.text == "Hello, world!\n"
    finally:
        # Wine cannot deliver Ctrl+C; end our own process group (python.sh, wine, python.exe).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        if ca_folder is not None:
            shutil.rmtree(ca_folder, ignore_errors=True)


def _served_serial(port: int, context: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
            der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _write_pair(leaf: trustme.LeafCert, cert: Path, key: Path) -> None:
    key.write_bytes(leaf.private_key_pem.bytes())
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


def test_certificate_file_change_reloads_on_windows(tmp_path: Path) -> None:
    """The change poller (no SIGHUP on Windows) picks up replaced files on the Proactor loop."""
    ca = trustme.CA()
    old_leaf, new_leaf = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    _write_pair(old_leaf, cert, key)
    port = _free_port()
    command = ["bash", str(PYTHON_SH), WINPY, "-m", "gateway", "--app-dir", "examples", "--port", str(port)]
    command += ["--cert", str(cert), "--key", str(key), "--cert-reload-interval", "0.5", "--no-access-log", "hello:app"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "serving https://" not in line:
            line = process.stdout.readline()
            if not line:
                break
        assert f"serving https://127.0.0.1:{port}" in line, line
        context = ssl.create_default_context()
        ca.configure_trust(context)
        old_serial = x509.load_pem_x509_certificate(old_leaf.cert_chain_pems[0].bytes()).serial_number
        new_serial = x509.load_pem_x509_certificate(new_leaf.cert_chain_pems[0].bytes()).serial_number
        assert _served_serial(port, context) == old_serial
        _write_pair(new_leaf, cert, key)
        deadline = time.monotonic() + 20
        serial = old_serial
        while serial != new_serial and time.monotonic() < deadline:
            time.sleep(0.3)
            serial = _served_serial(port, context)
        assert serial == new_serial
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
