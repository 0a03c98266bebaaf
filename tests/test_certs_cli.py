"""The CLI's TLS side: HTTPS by default with the dev certificate, --no-tls, ``asgigw certs``."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509

from gateway import devcerts
from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving (https?)://127\.0\.0\.1:(\d+)")


@contextmanager
def cli_server(*args: str, ca_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Run ``python -m gateway ARGS`` on a free port; yield (url, stderr lines so far)."""
    environ = {**os.environ, devcerts.ENV_CA_DIR: str(ca_dir)}
    command = [sys.executable, "-m", "gateway", "--port", "0", "--app-dir", "examples", *args, "hello:app"]
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = SERVING.search(line)
            if match:
                url = f"{match.group(1)}://127.0.0.1:{match.group(2)}"
        assert url is not None, "".join(lines)
        if url.startswith("https"):
            lines.append(process.stderr.readline())  # the TLS line follows the serving line
        yield url, lines
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()


def test_cli_serves_https_with_dev_certificate_by_default(tmp_path: Path) -> None:
    with cli_server(ca_dir=tmp_path) as (url, lines):
        assert url.startswith("https://")
        text = "".join(lines)
        assert "development certificate" in text and "asgigw certs trust" in text
        assert str(tmp_path / devcerts.CA_CERT_FILE) in text
        response = httpx.get(url, verify=ssl.create_default_context(cafile=tmp_path / devcerts.CA_CERT_FILE))
        assert response.text == "Hello, world!\n"
    assert (tmp_path / devcerts.DEV_CERT_FILE).exists()


def test_cli_no_tls_serves_plain_http(tmp_path: Path) -> None:
    with cli_server("--no-tls", ca_dir=tmp_path) as (url, _):
        assert url.startswith("http://")
        assert httpx.get(url).text == "Hello, world!\n"
    assert not (tmp_path / devcerts.CA_CERT_FILE).exists()


def test_help_lists_serve_options_and_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--no-tls", "--ca-dir", "--dev-name", "--tls-min-version", "--sni-cert", "--client-cert", "--cert"):
        assert option in result.output
    assert "certs" in result.output


def test_no_tls_with_cert_is_an_error() -> None:
    result = CliRunner().invoke(main, ["--no-tls", "--cert", "a.pem", "--key", "b.pem", "hello:app"])
    assert result.exit_code == 2
    assert "--no-tls and --cert" in result.output


def test_certs_show_before_and_after(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["certs", "show", "--ca-dir", str(tmp_path)])
    assert result.exit_code == 0 and "not created yet" in result.output
    certificate = devcerts.ensure_dev_certificate(tmp_path)
    result = runner.invoke(main, ["certs", "show"], env={devcerts.ENV_CA_DIR: str(tmp_path)})
    assert result.exit_code == 0
    assert certificate.fingerprint in result.output and str(certificate.cert_path) in result.output


def test_certs_issue_writes_pair_signed_by_local_ca(tmp_path: Path) -> None:
    out = tmp_path / "project-certs"
    args = ["certs", "issue", "app.test", "10.1.2.3", "--out", str(out), "--ca-dir", str(tmp_path / "ca")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert str(out / "app.test.pem") in result.output
    chain = x509.load_pem_x509_certificates((out / "app.test.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / devcerts.CA_CERT_FILE).read_bytes())
    chain[0].verify_directly_issued_by(ca)
    assert (out / "app.test-key.pem").exists()


def test_certs_issue_needs_a_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "issue", "--ca-dir", str(tmp_path)])
    assert result.exit_code == 2


@pytest.mark.parametrize("argv", [["certs", "--help"], ["certs", "issue", "--help"]])
def test_certs_help(argv: list[str]) -> None:
    result = CliRunner().invoke(main, argv, prog_name="asgigw")
    assert result.exit_code == 0 and "Usage: asgigw certs" in result.output
