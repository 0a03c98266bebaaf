"""Operator TLS end to end: key formats, errors, versions, ciphers, SNI, mTLS, the tls scope
extension and hot reload, with real handshakes against the real server on 127.0.0.1."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import tls
from gateway.config import Config, ConfigError
from tests.conftest import CertFiles, running_server

ROOT = Path(__file__).resolve().parent.parent


async def tls_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Answers with the scope's ``tls`` extension as JSON; ``/slow`` takes a second first."""
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope["extensions"].get("tls"))})
        await send({"type": "websocket.close", "code": 1000})
        return
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        import asyncio

        await asyncio.sleep(1.0)
    body = json.dumps(scope["extensions"].get("tls")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def serve(**options: Any) -> Any:
    options.setdefault("lifespan", "off")
    return running_server(tls_app, **options)


def write_pair(
    folder: Path, leaf: trustme.LeafCert, key_format: str = "pkcs8", password: bytes | None = None, stem: str = "srv"
) -> tuple[str, str]:
    """Write ``leaf``'s chain and its key in ``key_format`` (pkcs1/sec1 = traditional, pkcs8)."""
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    private_format = (
        serialization.PrivateFormat.PKCS8 if key_format == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, private_format, encryption))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return str(cert_path), str(key_path)


def client_context(ca: trustme.CA, **settings: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def served_certificate(port: int, context: ssl.SSLContext, server_name: str | None = "localhost") -> x509.Certificate:
    """Handshake with the server and return the certificate it presented."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as wrapped:
            der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def get_json(url: str, context: ssl.SSLContext, path: str = "/") -> Any:
    with httpx.Client(verify=context) as client:
        response = client.get(url.replace("127.0.0.1", "localhost") + path)
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def rsa_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)


@pytest.fixture(scope="module")
def ec_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)


# -- certificate and key files ------------------------------------------------------


@pytest.mark.parametrize("password", [None, b"s3cret"])
@pytest.mark.parametrize(
    ("key_type", "key_format"), [("rsa", "pkcs1"), ("rsa", "pkcs8"), ("ec", "sec1"), ("ec", "pkcs8")]
)
def test_key_formats(
    tmp_path: Path,
    ca: trustme.CA,
    rsa_leaf: trustme.LeafCert,
    ec_leaf: trustme.LeafCert,
    key_type: str,
    key_format: str,
    password: bytes | None,
) -> None:
    leaf = rsa_leaf if key_type == "rsa" else ec_leaf
    certfile, keyfile = write_pair(tmp_path, leaf, key_format, password)
    header = Path(keyfile).read_text().splitlines()[0]
    if key_format == "pkcs8":
        assert header == ("-----BEGIN ENCRYPTED PRIVATE KEY-----" if password else "-----BEGIN PRIVATE KEY-----")
    else:
        assert header == f"-----BEGIN {'RSA' if key_type == 'rsa' else 'EC'} PRIVATE KEY-----"
    key_password = password.decode() if password else None
    with serve(certfile=certfile, keyfile=keyfile, key_password=key_password) as server:
        served = served_certificate(server.port, client_context(ca))
    assert served.public_bytes(serialization.Encoding.PEM) == leaf.cert_chain_pems[0].bytes()


def test_full_chain_is_served(tmp_path: Path, ca: trustme.CA) -> None:
    # The client trusts only the root; the handshake verifies only if the server also
    # sends the intermediate from the certificate file.
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("localhost")
    assert len(leaf.cert_chain_pems) == 2
    certfile, keyfile = write_pair(tmp_path, leaf)
    with serve(certfile=certfile, keyfile=keyfile) as server:
        served = served_certificate(server.port, client_context(ca))
        assert served.issuer == x509.load_pem_x509_certificate(intermediate.cert_pem.bytes()).subject


def _error(**options: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        tls.create_server_context(Config(**options))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_error_messages(tmp_path: Path, ca: trustme.CA, ec_leaf: trustme.LeafCert, rsa_leaf: trustme.LeafCert) -> None:
    certfile, keyfile = write_pair(tmp_path, ec_leaf)
    _, other_key = write_pair(tmp_path, rsa_leaf, stem="other")
    _, locked_key = write_pair(tmp_path, ec_leaf, "pkcs8", b"right", stem="locked")
    missing = str(tmp_path / "missing.pem")
    assert _error(certfile=missing, keyfile=keyfile) == f"certificate file not found: {missing}"
    assert _error(certfile=certfile, keyfile=str(tmp_path)) == f"key path is not a file: {tmp_path}"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    assert "holds no PEM certificate" in _error(certfile=str(garbage), keyfile=keyfile)
    assert "cannot read key" in _error(certfile=certfile, keyfile=str(garbage))
    assert _error(certfile=certfile, keyfile=other_key) == f"key {other_key} does not match certificate {certfile}"
    assert "is encrypted: give --key-password" in _error(certfile=certfile, keyfile=locked_key)
    message = _error(certfile=certfile, keyfile=locked_key, key_password="wrong")
    assert message == f"wrong --key-password for key {locked_key}"
    assert "--ciphers" in _error(certfile=certfile, keyfile=keyfile, ciphers="NO-SUCH-CIPHER")
    assert "--ca-certs" in _error(certfile=certfile, keyfile=keyfile, ca_certs=str(garbage), client_cert="required")


def test_unreadable_file_error(tmp_path: Path, ec_leaf: trustme.LeafCert) -> None:
    if sys.platform == "win32" or os.geteuid() == 0:
        pytest.skip("root (and Windows ACLs) can read a mode-000 file")
    certfile, keyfile = write_pair(tmp_path, ec_leaf)
    os.chmod(keyfile, 0)
    try:
        assert f"key file is not readable: {keyfile}" in _error(certfile=certfile, keyfile=keyfile)
    finally:
        os.chmod(keyfile, 0o600)


def test_expired_certificate_refused_unless_allowed(tmp_path: Path, ca: trustme.CA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert(
        "localhost", not_before=now - datetime.timedelta(days=10), not_after=now - datetime.timedelta(days=1)
    )
    certfile, keyfile = write_pair(tmp_path, leaf)
    message = _error(certfile=certfile, keyfile=keyfile)
    assert "expired on" in message and "--allow-expired" in message
    config = Config(certfile=certfile, keyfile=keyfile, allow_expired=True)
    assert isinstance(tls.create_server_context(config), ssl.SSLContext)
    assert any("has expired" in warning for warning in tls.startup_warnings(config))


def test_certificate_for_other_names_warns(tmp_path: Path, ca: trustme.CA) -> None:
    certfile, keyfile = write_pair(tmp_path, ca.issue_cert("other.test"))
    warnings = tls.startup_warnings(Config(certfile=certfile, keyfile=keyfile))
    assert warnings == [f"certificate {certfile} is not valid for any bound name (127.0.0.1); it covers: other.test"]
    assert tls.startup_warnings(Config(certfile=certfile, keyfile=keyfile, host="0.0.0.0")) == []
    good_cert, good_key = write_pair(tmp_path, ca.issue_cert("127.0.0.1"), stem="good")
    assert tls.startup_warnings(Config(certfile=good_cert, keyfile=good_key)) == []


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"sni_certs": ("api.test",)}, "expected HOST=CERT,KEY"),
        ({"client_cert": "required"}, "needs --ca-certs"),
        ({"ca_certs": "ca.pem"}, "--ca-certs has no effect"),
        ({"tls_min_version": "1.1"}, "choose 1.2 or 1.3"),
    ],
)
def test_config_validation(cert_files: CertFiles, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Config(certfile=str(cert_files.cert), keyfile=str(cert_files.key), **options)


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    command = [sys.executable, "-m", "gateway", "--cert", str(missing), "--key", str(missing), "examples.hello:app"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"certificate file not found: {missing}" in result.stderr
    assert "Traceback" not in result.stderr


# -- versions and ciphers -----------------------------------------------------------


def test_tls_min_version_13_refuses_tls12(cert_files: CertFiles, ca: trustme.CA) -> None:
    with serve(certfile=str(cert_files.cert), keyfile=str(cert_files.key), tls_min_version="1.3") as server:
        old_client = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            served_certificate(server.port, old_client)
        assert get_json(server.url, client_context(ca))["tls_version"] == 0x0304


def test_ciphers_limit_tls12_suites(cert_files: CertFiles, ca: trustme.CA) -> None:
    # The session certificate has an EC key, so ECDSA suites apply.
    options = {
        "certfile": str(cert_files.cert),
        "keyfile": str(cert_files.key),
        "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
    }
    with serve(**options) as server:
        refused = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        refused.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            served_certificate(server.port, refused)
        accepted = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        extension = get_json(server.url, accepted)
    assert extension["tls_version"] == 0x0303
    assert extension["cipher_suite"] == 0xC02C  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, RFC 5289


# -- SNI ------------------------------------------------------------------------------


def test_sni_picks_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    default = write_pair(tmp_path, ca.issue_cert("localhost"), stem="default")
    api = write_pair(tmp_path, ca.issue_cert("api.test"), stem="api")
    wild = write_pair(tmp_path, ca.issue_cert("*.wild.test"), stem="wild")
    sni = (f"api.test={api[0]},{api[1]}", f"*.wild.test={wild[0]},{wild[1]}")
    with serve(certfile=default[0], keyfile=default[1], sni_certs=sni) as server:
        context = client_context(ca)

        def names(server_name: str | None, check: bool = True) -> list[str]:
            context.check_hostname = check
            served = served_certificate(server.port, context, server_name)
            return list(
                served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                    x509.DNSName
                )
            )

        assert names("api.test") == ["api.test"]
        assert names("API.test") == ["api.test"]
        assert names("x.wild.test") == ["*.wild.test"]
        assert names("localhost") == ["localhost"]
        assert names("unknown.test", check=False) == ["localhost"]
        assert names(None, check=False) == ["localhost"]


# -- client certificates and the tls extension -----------------------------------------


def test_tls_extension_values(cert_files: CertFiles, ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    with serve(certfile=str(cert_files.cert), keyfile=str(cert_files.key)) as server:
        extension = get_json(server.url, client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_3))
    assert extension == {
        "server_cert": server_cert.cert_chain_pems[0].bytes().decode(),
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": extension["cipher_suite"],
    }
    assert extension["cipher_suite"] in (0x1301, 0x1302, 0x1303)  # RFC 8446 §B.4


def _mtls(cert_files: CertFiles, mode: str) -> Any:
    return serve(
        certfile=str(cert_files.cert), keyfile=str(cert_files.key), ca_certs=str(cert_files.ca), client_cert=mode
    )


def test_mtls_required(cert_files: CertFiles, ca: trustme.CA) -> None:
    client_leaf = ca.issue_cert("client.test", common_name="client one")
    with _mtls(cert_files, "required") as server:
        with_cert = client_context(ca)
        client_leaf.configure_cert(with_cert)
        extension = get_json(server.url, with_cert)
        expected_name = x509.load_pem_x509_certificate(client_leaf.cert_chain_pems[0].bytes()).subject.rfc4514_string()
        assert extension["client_cert_name"] == expected_name and "CN=client one" in expected_name
        assert extension["client_cert_chain"][0] == client_leaf.cert_chain_pems[0].bytes().decode()
        assert extension["client_cert_error"] is None
        # Missing, or from a CA the server does not trust: no HTTP response at all.
        stranger = trustme.CA().issue_cert("client.test")
        stranger_context = client_context(ca)
        stranger.configure_cert(stranger_context)
        for context in (client_context(ca), stranger_context):
            with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
                get_json(server.url, context)


def test_mtls_optional(cert_files: CertFiles, ca: trustme.CA) -> None:
    client_leaf = ca.issue_cert("client.test")
    with _mtls(cert_files, "optional") as server:
        without = get_json(server.url, client_context(ca))
        assert without["client_cert_chain"] == [] and without["client_cert_name"] is None
        with_cert = client_context(ca)
        client_leaf.configure_cert(with_cert)
        assert get_json(server.url, with_cert)["client_cert_name"] is not None


# -- hot reload ---------------------------------------------------------------------


def _wait_for_serial(port: int, context: ssl.SSLContext, serial: int, timeout: float = 10.0) -> x509.Certificate:
    deadline = time.monotonic() + timeout
    while True:
        served = served_certificate(port, context)
        if served.serial_number == serial or time.monotonic() > deadline:
            return served
        time.sleep(0.1)


def test_reload_on_change_while_request_in_flight(
    tmp_path: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    old_leaf, new_leaf = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    certfile, keyfile = write_pair(tmp_path, old_leaf)
    context = client_context(ca)
    with serve(certfile=certfile, keyfile=keyfile, cert_reload_interval=0.2) as server:
        slow: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: slow.update(body=get_json(server.url, context, "/slow")))
        thread.start()
        time.sleep(0.3)  # the slow request is in flight on the old certificate
        staging = tmp_path / "staging"
        staging.mkdir()
        new_cert, new_key = write_pair(staging, new_leaf)
        os.replace(new_key, keyfile)
        os.replace(new_cert, certfile)
        new_serial = x509.load_pem_x509_certificate(new_leaf.cert_chain_pems[0].bytes()).serial_number
        assert _wait_for_serial(server.port, context, new_serial).serial_number == new_serial
        thread.join(10)
        # The in-flight request finished on its connection, still with the old certificate.
        assert slow["body"]["server_cert"] == old_leaf.cert_chain_pems[0].bytes().decode()
        assert get_json(server.url, context)["server_cert"] == new_leaf.cert_chain_pems[0].bytes().decode()

        # A broken new key: logged, and the server keeps the certificate it had.
        Path(keyfile).write_text("broken")
        deadline = time.monotonic() + 10
        while "TLS reload" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "still serving the previous certificates" in caplog.text
        assert served_certificate(server.port, context).serial_number == new_serial


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX only")
def test_sighup_reloads(tmp_path: Path, ca: trustme.CA) -> None:
    import signal

    old_leaf, new_leaf = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    certfile, keyfile = write_pair(tmp_path, old_leaf)
    command = [sys.executable, "-m", "gateway", "--cert", certfile, "--key", keyfile, "--port", "0"]
    command += ["--cert-reload-interval", "0", "--lifespan", "off", "examples.hello:app"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = ""
        for _ in range(20):
            line = process.stderr.readline()
            if "serving https://" in line:
                break
        port = int(line.split("https://127.0.0.1:")[1].split()[0])
        context = client_context(ca)
        write_pair(tmp_path, new_leaf)
        time.sleep(0.3)
        new_serial = x509.load_pem_x509_certificate(new_leaf.cert_chain_pems[0].bytes()).serial_number
        assert served_certificate(port, context).serial_number != new_serial  # polling is off
        process.send_signal(signal.SIGHUP)
        assert _wait_for_serial(port, context, new_serial, timeout=5).serial_number == new_serial
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def test_dev_certificate_renewed_while_running(tmp_path: Path) -> None:
    from gateway import devcerts

    with serve(dev_tls=True, ca_dir=str(tmp_path), cert_reload_interval=0.2) as server:
        context = ssl.create_default_context(cafile=str(tmp_path / devcerts.CA_CERT_FILE))
        first = served_certificate(server.port, context)
        # Put a leaf that expires in 5 days in place, as if the server had run for weeks.
        authority = devcerts.CertificateAuthority.load(tmp_path)
        cert, key = authority.issue(devcerts.dev_names(), days=5)
        (tmp_path / devcerts.DEV_KEY_FILE).write_bytes(devcerts._key_pem(key))
        (tmp_path / devcerts.DEV_CERT_FILE).write_bytes(devcerts._cert_pem(cert))
        deadline = time.monotonic() + 10
        served = first
        while time.monotonic() < deadline:
            served = served_certificate(server.port, context)
            if served.serial_number not in (first.serial_number, cert.serial_number):
                break
            time.sleep(0.1)
        assert served.serial_number not in (first.serial_number, cert.serial_number)
        assert served.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=20)


def _memory_handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_name: str | None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A complete handshake through memory BIOs: the same OpenSSL paths as a socket."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=server_name)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    # TLS 1.3 sends session tickets after the handshake; let the client read them.
    client.write(b"x")
    server_in.write(client_out.read())
    assert server.read(1) == b"x"
    return server, client


def test_alpn_survives_sni_switch_and_client_chain(tmp_path: Path, ca: trustme.CA) -> None:
    default = write_pair(tmp_path, ca.issue_cert("localhost"), stem="default")
    api = write_pair(tmp_path, ca.issue_cert("api.test"), stem="api")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = Config(
        certfile=default[0],
        keyfile=default[1],
        sni_certs=(f"api.test={api[0]},{api[1]}",),
        ca_certs=str(ca_file),
        client_cert="optional",
    )
    server_context = tls.create_server_context(config, ("h2", "http/1.1"))
    intermediate = ca.create_child_ca()
    client_leaf = intermediate.issue_cert("client.test")
    context = client_context(ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    client_leaf.configure_cert(context)
    server, client = _memory_handshake(server_context, context, "api.test")
    assert server.selected_alpn_protocol() == client.selected_alpn_protocol() == "h2"
    served = x509.load_der_x509_certificate(client.getpeercert(binary_form=True) or b"")
    assert served.public_bytes(serialization.Encoding.PEM).decode() == Path(api[0]).read_text()
    extension = tls.tls_extension(server)
    assert extension["server_cert"] == Path(api[0]).read_text()
    assert extension["client_cert_chain"] == [blob.bytes().decode() for blob in client_leaf.cert_chain_pems]
    assert len(client_leaf.cert_chain_pems) == 2


def test_tls_extension_over_http2_and_websocket(cert_files: CertFiles, ca: trustme.CA) -> None:
    from websockets.sync.client import connect

    client_leaf = ca.issue_cert("client.test", common_name="h2 and ws client")
    expected_name = x509.load_pem_x509_certificate(client_leaf.cert_chain_pems[0].bytes()).subject.rfc4514_string()
    # Two contexts: httpx sets ALPN (h2) on the one it is given.
    context, websocket_context = client_context(ca), client_context(ca)
    client_leaf.configure_cert(context)
    client_leaf.configure_cert(websocket_context)
    with _mtls(cert_files, "required") as server:
        with httpx.Client(http2=True, verify=context) as client:
            response = client.get(f"https://localhost:{server.port}/")
        assert response.http_version == "HTTP/2"
        over_http2 = response.json()
        with connect(f"wss://localhost:{server.port}/", ssl=websocket_context, open_timeout=10) as websocket:
            over_websocket = json.loads(websocket.recv(timeout=10))
    for extension in (over_http2, over_websocket):
        assert extension["client_cert_name"] == expected_name
        assert extension["client_cert_chain"][0] == client_leaf.cert_chain_pems[0].bytes().decode()
        assert extension["server_cert"] == Path(cert_files.cert).read_text()
        assert extension["tls_version"] == 0x0304


def test_reload_waits_for_a_pair_copied_one_file_at_a_time(
    tmp_path: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    old_leaf, new_leaf = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    certfile, keyfile = write_pair(tmp_path, old_leaf)
    staging = tmp_path / "staging"
    staging.mkdir()
    new_cert, new_key = write_pair(staging, new_leaf)
    context = client_context(ca)
    with serve(certfile=certfile, keyfile=keyfile, cert_reload_interval=0.05) as server:
        # Certificate first, key a moment later: in between the pair does not match, and a
        # poll every 0.05 s sees it unless the reloader lets the files settle first.
        Path(certfile).write_bytes(Path(new_cert).read_bytes())
        time.sleep(0.1)
        Path(keyfile).write_bytes(Path(new_key).read_bytes())
        new_serial = x509.load_pem_x509_certificate(new_leaf.cert_chain_pems[0].bytes()).serial_number
        assert _wait_for_serial(server.port, context, new_serial).serial_number == new_serial
    assert "failed, still serving the previous certificates" not in caplog.text


def test_not_yet_valid_certificate_warns(tmp_path: Path, ca: trustme.CA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert(
        "127.0.0.1", not_before=now + datetime.timedelta(days=2), not_after=now + datetime.timedelta(days=30)
    )
    certfile, keyfile = write_pair(tmp_path, leaf)
    warnings = tls.startup_warnings(Config(certfile=certfile, keyfile=keyfile))
    assert len(warnings) == 1 and "is not valid before" in warnings[0]


def test_client_ca_bundle_is_reloaded(tmp_path: Path, cert_files: CertFiles, ca: trustme.CA) -> None:
    other_ca = trustme.CA()
    bundle = tmp_path / "clients.pem"
    bundle.write_bytes(ca.cert_pem.bytes())
    newcomer = other_ca.issue_cert("client.test")
    context = client_context(ca)
    newcomer.configure_cert(context)
    options = {"ca_certs": str(bundle), "client_cert": "required", "cert_reload_interval": 0.05}
    with serve(certfile=str(cert_files.cert), keyfile=str(cert_files.key), **options) as server:
        with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
            get_json(server.url, context)
        bundle.write_bytes(ca.cert_pem.bytes() + other_ca.cert_pem.bytes())
        deadline = time.monotonic() + 10
        while True:
            try:
                extension = get_json(server.url, context)
                break
            except (httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError):
                assert time.monotonic() < deadline, "the new client CA was never loaded"
                time.sleep(0.1)
    assert extension["client_cert_name"] is not None
