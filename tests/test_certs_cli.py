"""The CLI's TLS side: HTTPS by default with the dev certificate, --no-tls, ``asgigw certs``."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509

from gateway import devcerts, trust_store
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


# -- trust / untrust ----------------------------------------------------------------


@pytest.fixture
def ca_file(tmp_path: Path) -> trust_store.CAFile:
    authority = devcerts.CertificateAuthority.load_or_create(tmp_path / "ca")
    return trust_store.CAFile.read(authority.cert_path)


def test_windows_argv(ca_file: trust_store.CAFile, tmp_path: Path) -> None:
    add = trust_store.plan(ca_file, "win32", True, which=lambda name: None, home=tmp_path)
    assert [step.argv for step in add] == [("certutil", "-user", "-addstore", "Root", ca_file.path)]
    remove = trust_store.plan(ca_file, "win32", False, which=lambda name: None, home=tmp_path)
    assert [step.argv for step in remove] == [("certutil", "-user", "-delstore", "Root", ca_file.sha1)]
    assert len(ca_file.sha1) == 40 and ca_file.sha1.isupper()


def test_macos_argv_with_firefox_nss(ca_file: trust_store.CAFile, tmp_path: Path) -> None:
    profile = tmp_path / "Library" / "Application Support" / "Firefox" / "Profiles" / "abc.default"
    profile.mkdir(parents=True)
    (profile / "cert9.db").write_bytes(b"")
    which = {"certutil": "/opt/homebrew/bin/certutil"}.get
    keychain = str(tmp_path / "Library" / "Keychains" / "login.keychain-db")
    add = trust_store.plan(ca_file, "darwin", True, which=which, home=tmp_path)
    assert [step.argv for step in add] == [
        ("security", "add-trusted-cert", "-r", "trustRoot", "-k", keychain, ca_file.path),
        (
            "/opt/homebrew/bin/certutil",
            "-A",
            "-d",
            f"sql:{profile}",
            "-t",
            "C,,",
            "-n",
            ca_file.nickname,
            "-i",
            ca_file.path,
        ),
    ]
    remove = trust_store.plan(ca_file, "darwin", False, which=which, home=tmp_path)
    assert [step.argv for step in remove] == [
        ("security", "remove-trusted-cert", ca_file.path),
        ("security", "delete-certificate", "-Z", ca_file.sha1, keychain),
        ("/opt/homebrew/bin/certutil", "-D", "-d", f"sql:{profile}", "-n", ca_file.nickname),
    ]


@pytest.mark.parametrize(
    ("tools", "expected_add"),
    [
        (
            ("update-ca-certificates",),
            ["cp {ca} /usr/local/share/ca-certificates/asgigw-{id}.crt", "update-ca-certificates"],
        ),
        (("update-ca-trust",), ["cp {ca} /etc/pki/ca-trust/source/anchors/asgigw-{id}.pem", "update-ca-trust extract"]),
        (("trust",), ["trust anchor --store {ca}"]),
        ((), []),
    ],
)
def test_linux_plans(
    ca_file: trust_store.CAFile, tmp_path: Path, tools: tuple[str, ...], expected_add: list[str]
) -> None:
    nssdb = tmp_path / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    (nssdb / "cert9.db").write_bytes(b"")
    which = {tool: f"/usr/bin/{tool}" for tool in tools}.get
    steps = trust_store.plan(ca_file, "linux", True, which=which, home=tmp_path)
    expected = [line.format(ca=ca_file.path, id=ca_file.short_id) for line in expected_add]
    assert [step.shell() for step in steps] == expected


def test_nss_argv_on_linux(ca_file: trust_store.CAFile, tmp_path: Path) -> None:
    nssdb = tmp_path / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    (nssdb / "cert9.db").write_bytes(b"")
    (tmp_path / ".mozilla" / "firefox" / "no-db-here").mkdir(parents=True)
    which = {"update-ca-certificates": "/usr/sbin/update-ca-certificates", "certutil": "/usr/bin/certutil"}.get
    steps = trust_store.plan(ca_file, "linux", True, which=which, home=tmp_path)
    assert steps[-1].argv == (
        "/usr/bin/certutil",
        "-A",
        "-d",
        f"sql:{nssdb}",
        "-t",
        "C,,",
        "-n",
        ca_file.nickname,
        "-i",
        ca_file.path,
    )
    assert len(steps) == 3  # the Firefox folder without cert9.db is not a profile


def test_execute_prints_what_to_run_without_permission(tmp_path: Path) -> None:
    def denied(argv: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "trust: couldn't create file: Permission denied")

    steps = [trust_store.Step("p11-kit trust anchor", argv=("trust", "anchor", "--store", "/ca dir/ca.pem"))]
    lines, ok = trust_store.execute(steps, run=denied)
    assert not ok
    assert lines == [
        "not enough permission for the system trust store; run:",
        "  sudo trust anchor --store '/ca dir/ca.pem'",
    ]

    def succeeded(argv: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, "", "")

    target = tmp_path / "copy.crt"
    source = tmp_path / "source.pem"
    source.write_text("x")
    steps = [trust_store.Step("copy", copy_from=str(source), path=str(target)), *steps]
    lines, ok = trust_store.execute(steps, run=succeeded)
    assert ok and target.read_text() == "x"
    assert lines == ["done: copy", "done: p11-kit trust anchor (trust anchor --store '/ca dir/ca.pem')"]


def test_trust_dry_run_prints_commands(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "trust", "--dry-run", "--ca-dir", str(tmp_path)])
    if not trust_store.plan(trust_store.CAFile.read(tmp_path / devcerts.CA_CERT_FILE), sys.platform, True):
        pytest.skip("no trust store tool on this machine")
    assert result.exit_code == 0, result.output
    assert "would run:" in result.output and str(tmp_path / devcerts.CA_CERT_FILE) in result.output


def test_untrust_without_ca_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "untrust", "--ca-dir", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read the local CA" in result.output


def _curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not shutil.which("update-ca-certificates")
    or not shutil.which("curl")
    or not os.access("/usr/local/share/ca-certificates", os.W_OK),
    reason="needs Debian-style update-ca-certificates, curl and write access to the system trust store",
)
@pytest.mark.slow
def test_trust_for_real_on_linux(tmp_path: Path) -> None:
    """The one test that touches the real system trust store; it always untrusts again."""
    gateway_cli = [sys.executable, "-m", "gateway", "certs"]
    # HOME elsewhere: no browser NSS database of the real user is touched.
    environ = {**os.environ, devcerts.ENV_CA_DIR: str(tmp_path), "HOME": str(tmp_path / "home")}
    ca = None
    try:
        result = subprocess.run([*gateway_cli, "trust"], env=environ, capture_output=True, text=True, timeout=120)
        ca = trust_store.CAFile.read(tmp_path / devcerts.CA_CERT_FILE)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"done: copy the CA to /usr/local/share/ca-certificates/asgigw-{ca.short_id}.crt" in result.stdout
        ca_pem = (tmp_path / devcerts.CA_CERT_FILE).read_text().strip()
        assert ca_pem in Path("/etc/ssl/certs/ca-certificates.crt").read_text()
        with cli_server(ca_dir=tmp_path) as (url, lines):
            assert "the system trusts it" in "".join(lines)
            trusted = _curl(url + "/")  # no -k, no --cacert: the system bundle decides
            assert trusted.returncode == 0, trusted.stderr
            assert trusted.stdout == "Hello, world!\n"
    finally:
        result = subprocess.run([*gateway_cli, "untrust"], env=environ, capture_output=True, text=True, timeout=120)
        if ca is not None:
            leftover = Path(f"/usr/local/share/ca-certificates/asgigw-{ca.short_id}.crt")
            if leftover.exists():  # untrust failed: clean up by hand so the machine stays as it was
                leftover.unlink()
                subprocess.run(["update-ca-certificates"], capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ca_pem not in Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    with cli_server(ca_dir=tmp_path) as (url, _):
        assert _curl(url + "/").returncode == 60  # curl: peer certificate cannot be authenticated


@pytest.mark.skipif(
    sys.platform not in ("linux", "darwin") or not shutil.which("certutil"),
    reason="needs NSS certutil (Debian: libnss3-tools)",
)
def test_nss_database_for_real(tmp_path: Path, ca_file: trust_store.CAFile) -> None:
    """Trust and untrust against a real, throwaway NSS database (as Chrome keeps in ~/.pki/nssdb)."""
    nssdb = tmp_path / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    created = subprocess.run(
        ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], capture_output=True, timeout=30
    )
    assert created.returncode == 0, created.stderr

    def nss_steps(add: bool) -> list[trust_store.Step]:
        steps = trust_store.plan(ca_file, sys.platform, add, home=tmp_path / "home")
        return [step for step in steps if "NSS" in step.description]  # leave the system store alone

    def listed() -> str:
        return subprocess.run(
            ["certutil", "-L", "-d", f"sql:{nssdb}"], capture_output=True, text=True, timeout=30
        ).stdout

    lines, ok = trust_store.execute(nss_steps(True))
    assert ok, lines
    assert lines == [f"done: add to the NSS database {nssdb} ({nss_steps(True)[0].shell()})"]
    assert ca_file.nickname in listed()
    lines, ok = trust_store.execute(nss_steps(False))
    assert ok, lines
    assert ca_file.nickname not in listed()
