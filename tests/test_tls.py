"""TLS end to end with trustme certificates: HTTPS scope, protocol versions, ALPN, the
handshake timeout, and certificate/key mistakes on the command line (one line, exit 2)."""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.apps import basic
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import CertFiles, running_server

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def locked_key(tmp_path_factory: pytest.TempPathFactory, server_cert: trustme.LeafCert) -> Path:
    """The server key encrypted with PASSWORD (trustme only writes unencrypted keys)."""
    key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), None)
    path = tmp_path_factory.mktemp("locked") / "locked-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return path


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Path:
    """A valid key that belongs to a different certificate."""
    path = tmp_path_factory.mktemp("other") / "other-key.pem"
    ca.issue_cert("other.test").private_key_pem.write_to_path(str(path))
    return path


def client_context(cert_files: CertFiles, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def test_https_request_has_https_scheme(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(basic.app, **options) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=cert_files.client_context) as client:
            report = client.get(f"{server.url}/secure").json()
        # Plain HTTP to the TLS port is answered with a 400 that says so (tests/test_https_redirect.py).
        plain = httpx.get(f"{server.url.replace('https', 'http', 1)}/secure", timeout=5)
        assert plain.status_code == 400
        assert b"plain HTTP request was sent to the HTTPS port" in plain.content
    assert report["scheme"] == "https"
    assert report["path"] == "/secure"


@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]
)
def test_tls_12_and_13_accepted_with_alpn(cert_files: CertFiles, version: ssl.TLSVersion, name: str) -> None:
    context = client_context(cert_files, version)
    context.set_alpn_protocols(["http/1.1"])
    with running_server(
        basic.app, certfile=str(cert_files.cert), keyfile=str(cert_files.key), lifespan="off"
    ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == name
                assert tls.selected_alpn_protocol() == "http/1.1"
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                assert tls.recv(100).startswith(b"HTTP/1.1 200 ")


def test_tls_11_refused(cert_files: CertFiles) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1_1 is deprecated
        context = client_context(cert_files, ssl.TLSVersion.TLSv1_1)
    # Let this client offer TLS 1.1 at all (OpenSSL 3 disables it at the default level), so
    # the refusal comes from the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with running_server(
        basic.app, certfile=str(cert_files.cert), keyfile=str(cert_files.key), lifespan="off"
    ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError)) as caught:
                context.wrap_socket(raw, server_hostname="localhost").close()
    if "NO_PROTOCOLS_AVAILABLE" in str(caught.value):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 even at security level 0")


def test_handshake_timeout_drops_silent_client(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(basic.app, tls_handshake_timeout=0.3, **options) as server:
        # With the 10 s default this recv would time out after 3 s and fail the test.
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as silent:
            try:
                assert silent.recv(1024) == b""
            except ConnectionResetError:
                pass
        # The server still serves handshakes that do happen.
        with httpx.Client(verify=cert_files.client_context) as client:
            assert client.get(server.url).status_code == 200


# -- the command line ----------------------------------------------------------------


def tls_error_line(*args: str, **env: str) -> str:
    """Run the CLI with TLS ``args``; check it exits 2 with one line; return that line."""
    result = run_gateway("--port", "0", *args, "tests.apps.basic:app", plain=False, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_wrong_certificate_path(cert_files: CertFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing-cert.pem"
    line = tls_error_line("--cert", str(missing), "--key", str(cert_files.key))
    assert line.endswith(f"certificate file not found: {missing}")


def test_cli_wrong_key_path(cert_files: CertFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing-key.pem"
    line = tls_error_line("--cert", str(cert_files.cert), "--key", str(missing))
    assert line.endswith(f"key file not found: {missing}")


def test_cli_key_not_matching_certificate(cert_files: CertFiles, other_key: Path) -> None:
    line = tls_error_line("--cert", str(cert_files.cert), "--key", str(other_key))
    assert line.endswith(f"key {other_key} does not match certificate {cert_files.cert}")


def test_cli_encrypted_key_without_password(cert_files: CertFiles, locked_key: Path) -> None:
    line = tls_error_line("--cert", str(cert_files.cert), "--key", str(locked_key))
    assert line.endswith(f"key {locked_key} is encrypted: give --key-password or $ASGIGW_KEY_PASSWORD")


def test_cli_encrypted_key_with_wrong_password(cert_files: CertFiles, locked_key: Path) -> None:
    line = tls_error_line("--cert", str(cert_files.cert), "--key", str(locked_key), "--key-password", "wrong")
    assert line.endswith(f"wrong --key-password for key {locked_key}")
    line = tls_error_line("--cert", str(cert_files.cert), "--key", str(locked_key), ASGIGW_KEY_PASSWORD="wrong")
    assert line.endswith(f"wrong --key-password for key {locked_key}")


@pytest.mark.parametrize("via", ["option", "environment"])
def test_cli_encrypted_key_with_right_password(cert_files: CertFiles, locked_key: Path, via: str) -> None:
    args = ["--port", "0", "--cert", str(cert_files.cert), "--key", str(locked_key), "tests.apps.basic:app"]
    env = {}
    if via == "option":
        args[0:0] = ["--key-password", PASSWORD]
    else:
        env["ASGIGW_KEY_PASSWORD"] = PASSWORD
    with gateway_process(*args, plain=False, **env) as server:
        url = server.url
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=cert_files.client_context) as client:
            assert client.get(f"{url}/unlocked").json()["scheme"] == "https"
