"""The local development CA and its leaf certificates (gateway/devcerts.py), end to end."""

from __future__ import annotations

import datetime
import logging
import ssl
import stat
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from examples.hello import app as hello_app
from gateway import cert_reload, devcerts
from gateway.config import Config
from tests.conftest import running_server


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {"HOME": "/home/ann", "XDG_DATA_HOME": "/data"}, "/data/asgigw"),
        ("linux", {"HOME": "/home/ann"}, "/home/ann/.local/share/asgigw"),
        # XDG Base Directory spec: a relative XDG_DATA_HOME is invalid and ignored.
        ("linux", {"HOME": "/home/ann", "XDG_DATA_HOME": "rel"}, "/home/ann/.local/share/asgigw"),
        ("darwin", {"HOME": "/Users/ann"}, "/Users/ann/Library/Application Support/asgigw"),
        ("win32", {"HOME": "/x", "LOCALAPPDATA": "C:/Users/ann/AppData/Local"}, "C:/Users/ann/AppData/Local/asgigw"),
    ],
)
def test_data_folder_per_platform(platform: str, environ: dict[str, str], expected: str) -> None:
    assert devcerts.data_folder(platform, environ) == Path(expected)


def test_ca_folder_precedence(tmp_path: Path) -> None:
    environ = {"HOME": "/home/ann", devcerts.ENV_CA_DIR: str(tmp_path / "env")}
    assert devcerts.ca_folder(str(tmp_path / "flag"), environ) == tmp_path / "flag"
    assert devcerts.ca_folder(None, environ) == tmp_path / "env"
    assert devcerts.ca_folder(None, {"HOME": "/home/ann"}) == Path("/home/ann/.local/share/asgigw")


def test_ca_and_leaf_are_created_once(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    first = devcerts.ensure_dev_certificate(folder, ["myapp.test"])
    assert first.renewed
    ca = _load(first.ca_path)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3652)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = _load(first.cert_path)
    leaf.verify_directly_issued_by(ca)
    assert {"localhost", "127.0.0.1", "::1", "myapp.test"} <= set(first.names)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < datetime.timedelta(days=32)
    if sys.platform != "win32":
        assert stat.S_IMODE((folder / devcerts.CA_KEY_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    again = devcerts.ensure_dev_certificate(folder, ["myapp.test"])
    assert not again.renewed
    assert again.fingerprint == first.fingerprint
    assert _load(again.ca_path).serial_number == ca.serial_number


def test_leaf_renewed_near_expiry_and_for_new_names(tmp_path: Path) -> None:
    first = devcerts.ensure_dev_certificate(tmp_path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=25)
    renewed = devcerts.ensure_dev_certificate(tmp_path, now=later)
    assert renewed.renewed and renewed.fingerprint != first.fingerprint
    assert renewed.not_after > first.not_after
    with_name = devcerts.ensure_dev_certificate(tmp_path, ["extra.test"], now=later)
    assert with_name.renewed and "extra.test" in with_name.names


def test_damaged_ca_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / devcerts.CA_CERT_FILE).write_text("not a certificate")
    (tmp_path / devcerts.CA_KEY_FILE).write_text("nor a key")
    with pytest.raises(devcerts.DevCertError, match="damaged"):
        devcerts.ensure_dev_certificate(tmp_path)


def test_issue_files_writes_full_chain(tmp_path: Path) -> None:
    authority = devcerts.CertificateAuthority.load_or_create(tmp_path / "ca")
    cert_path, key_path = devcerts.issue_files(["*.app.test", "app.test"], tmp_path / "out", authority, days=90)
    assert cert_path.name == "_wildcard.app.test.pem" and key_path.name == "_wildcard.app.test-key.pem"
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert len(chain) == 2 and chain[1] == authority.cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)  # the pair matches


def test_server_uses_dev_certificate_and_client_trusting_ca_connects(tmp_path: Path) -> None:
    with running_server(hello_app, dev_tls=True, ca_dir=str(tmp_path), dev_names=("app.test",)) as server:
        assert server.url.startswith("https://")
        ca_file = str(tmp_path / devcerts.CA_CERT_FILE)
        for host in ("127.0.0.1", "localhost"):
            with httpx.Client(verify=ssl.create_default_context(cafile=ca_file)) as client:
                response = client.get(f"https://{host}:{server.port}/")
            assert response.text == "Hello, world!\n"
        # A client without the local CA must refuse the certificate.
        with pytest.raises(httpx.ConnectError), httpx.Client(verify=ssl.create_default_context()) as client:
            client.get(server.url)


def test_describe_lists_paths_fingerprints_and_expiry(tmp_path: Path) -> None:
    assert any("not created yet" in line for line in devcerts.describe(tmp_path))
    certificate = devcerts.ensure_dev_certificate(tmp_path)
    text = "\n".join(devcerts.describe(tmp_path))
    assert str(certificate.ca_path) in text and str(certificate.cert_path) in text
    assert certificate.fingerprint in text
    assert f"{certificate.not_after:%Y-%m-%d}" in text


def test_startup_lines_and_non_loopback_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificate = devcerts.ensure_dev_certificate(tmp_path)
    caplog.set_level(logging.INFO, logger="gateway")
    cert_reload.log_tls_startup(Config(dev_tls=True, bind=("127.0.0.1:8443", "[::1]:8443")), certificate)
    assert f"development certificate {certificate.cert_path}" in caplog.text
    assert "asgigw certs trust" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    caplog.clear()
    cert_reload.log_tls_startup(Config(dev_tls=True, bind=("127.0.0.1:8443", "0.0.0.0:8443")), certificate)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "0.0.0.0:8443 with a development certificate" in warnings[0]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX only")
def test_reload_signal_posix_and_windows_fallback() -> None:
    import asyncio
    import os
    import signal

    from gateway import platform

    loop = asyncio.new_event_loop()
    try:
        calls: list[int] = []
        before = signal.getsignal(signal.SIGHUP)
        undo = platform.install_reload_signal(loop, lambda: calls.append(1), windows=True)
        assert signal.getsignal(signal.SIGHUP) is before  # Windows: nothing installed
        undo()
        undo = platform.install_reload_signal(loop, lambda: calls.append(1))
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            loop.run_until_complete(asyncio.sleep(0.05))
        finally:
            undo()
        assert calls == [1]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        loop.close()


def test_cli_default_is_dev_tls_and_config_default_is_plain() -> None:
    assert not Config().tls
    assert Config(dev_tls=True).tls
