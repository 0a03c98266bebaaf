"""--acme-domain end to end against a real ACME server (Pebble) on 127.0.0.1.

Pebble validates the names (which its DNS, challtestsrv, resolves to 127.0.0.1) on the
ports the test points it at: asgigw's TLS listener for tls-alpn-01, its --redirect-http
listener for http-01. Clients trust only Pebble's issuing root, so a response proves the
certificate came from the CA.
"""

from __future__ import annotations

import re
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apps.process import ServerProcess, free_port, gateway_process, run_gateway
from tests.pebble import MISSING, Pebble, running_pebble

pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
    pytest.mark.skipif(sys.platform == "win32", reason="Pebble runs on the Linux side"),
]

ISSUED = r"ACME: new certificate for {names}, valid until"
REQUESTED = "ACME: requesting a certificate for"


def acme_args(pebble: Pebble, acme_dir: Path, *names: str) -> list[str]:
    args = [
        "--acme-directory",
        pebble.directory,
        "--acme-ca-bundle",
        str(pebble.ca_bundle),
        "--acme-dir",
        str(acme_dir),
    ]
    args += ["--acme-agree-tos", "--acme-email", "ops@a.test"]
    for name in names:
        args += ["--acme-domain", name]
    return args


def verified_get(pebble: Pebble, port: int, name: str, client: httpx.Client | None = None) -> httpx.Response:
    """GET over TLS to 127.0.0.1:port with SNI ``name``, trusting only Pebble's root."""
    own = client is None
    client = client or httpx.Client(verify=pebble.client_context(), http2=True, timeout=10)
    try:
        return client.get(f"https://127.0.0.1:{port}/", headers={"host": name}, extensions={"sni_hostname": name})
    finally:
        if own:
            client.close()


def served_serial(port: int, name: str) -> int:
    """The serial number of the certificate served for ``name`` (unverified read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    from cryptography import x509

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def tls_port() -> int:
    return free_port()


@pytest.fixture
def pebble(tmp_path: Path, tls_port: int) -> Iterator[Pebble]:
    with running_pebble(tmp_path / "pebble", http_port=free_port(), tls_port=tls_port) as server:
        yield server


def wait_issued(server: ServerProcess, names: str, timeout: float = 60) -> None:
    server.wait_for(ISSUED.format(names=re.escape(names)), timeout)


@pytest.mark.slow
def test_first_issuance_with_tls_alpn_01_then_restart_reuses_it(pebble: Pebble, tmp_path: Path, tls_port: int) -> None:
    acme_dir = tmp_path / "acme"
    args = ["--bind", f"127.0.0.1:{tls_port}", *acme_args(pebble, acme_dir, "a.test"), "tests.apps.basic:app"]
    with gateway_process(*args, plain=False) as server:
        # Until the CA answers, a self-signed placeholder is served: not trusted by the client.
        wait_issued(server, "a.test")
        response = verified_get(pebble, tls_port, "a.test")
        assert response.status_code == 200
        assert response.http_version == "HTTP/2"
        first_serial = served_serial(tls_port, "a.test")
        assert server.stderr.count(REQUESTED) == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    # A restart serves the stored certificate at once and orders nothing.
    with gateway_process(*args, plain=False) as again:
        assert verified_get(pebble, tls_port, "a.test").status_code == 200
        assert served_serial(tls_port, "a.test") == first_serial
        again.send_signal(signal.SIGTERM)
        assert again.wait(20) == 0
    assert REQUESTED not in again.stderr


@pytest.mark.slow
def test_first_issuance_with_http_01_on_the_redirect_listener(tmp_path: Path) -> None:
    tls_port, plain_port = free_port(), free_port()
    with running_pebble(tmp_path / "pebble", http_port=plain_port, tls_port=free_port()) as pebble:
        args = [
            "--bind", f"127.0.0.1:{tls_port}",
            "--redirect-http", f"127.0.0.1:{plain_port}",
            "--acme-challenge", "http-01",
            *acme_args(pebble, tmp_path / "acme", "b.test,www.b.test"),
            "tests.apps.basic:app",
        ]  # fmt: skip
        with gateway_process(*args, plain=False) as server:
            wait_issued(server, "b.test, www.b.test")
            for name in ("b.test", "www.b.test"):
                assert verified_get(pebble, tls_port, name).status_code == 200
            # The redirect listener still redirects everything else.
            moved = httpx.get(f"http://127.0.0.1:{plain_port}/x?y=1", headers={"host": "b.test"})
            assert moved.status_code == 308
            assert moved.headers["location"] == f"https://b.test:{tls_port}/x?y=1"
            # The gateway answered the CA itself: a key authorization is token.thumbprint,
            # 43 + 1 + 43 bytes (the app would have answered its JSON echo).
            answers = re.findall(r'"GET /\.well-known/acme-challenge/\S+ HTTP/1\.1" (\d+) (\d+)', server.stderr)
            assert answers and set(answers) == {("200", "87")}
            unknown = httpx.get(f"http://127.0.0.1:{plain_port}/.well-known/acme-challenge/{'x' * 43}")
            assert unknown.status_code == 404


@pytest.mark.slow
def test_renewal_swaps_the_certificate_while_an_http2_connection_stays_open(tmp_path: Path) -> None:
    tls_port = free_port()
    # 30-second certificates: renewal is due after about 20 s (two thirds, minus jitter).
    with running_pebble(tmp_path / "pebble", http_port=free_port(), tls_port=tls_port, validity=30) as pebble:
        args = [
            "--bind",
            f"127.0.0.1:{tls_port}",
            *acme_args(pebble, tmp_path / "acme", "c.test"),
            "tests.apps.basic:app",
        ]
        with gateway_process(*args, plain=False) as server:
            wait_issued(server, "c.test")
            first = served_serial(tls_port, "c.test")
            with httpx.Client(verify=pebble.client_context(), http2=True, timeout=10) as client:
                assert verified_get(pebble, tls_port, "c.test", client).http_version == "HTTP/2"
                issued = server.output.lines.index(
                    next(line for line in server.output.lines if "ACME: new cert" in line)
                )
                server.output.wait_for(ISSUED.format(names="c.test"), 45, after=issued + 1)
                server.output.wait_for("TLS certificates reloaded", 15, after=issued + 2)
                # The connection opened before the renewal still works...
                assert verified_get(pebble, tls_port, "c.test", client).status_code == 200
            # ...and new connections get the new certificate.
            assert served_serial(tls_port, "c.test") != first
            assert verified_get(pebble, tls_port, "c.test").status_code == 200


@pytest.mark.slow
def test_workers_issue_once_and_all_serve_it(pebble: Pebble, tmp_path: Path, tls_port: int) -> None:
    args = [
        "--bind", f"127.0.0.1:{tls_port}", "--workers", "2",
        *acme_args(pebble, tmp_path / "acme", "d.test"), "tests.apps.pid:app",
    ]  # fmt: skip
    with gateway_process(*args, plain=False) as server:
        wait_issued(server, "d.test")
        server.wait_for("asking 2 workers to reload", 15)
        pids = set()
        for _ in range(30):
            response = verified_get(pebble, tls_port, "d.test")
            pids.add(response.json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "both workers serve the CA's certificate"
        assert server.stderr.count(REQUESTED) == 1


@pytest.mark.slow
def test_nonce_rejections_are_retried(tmp_path: Path) -> None:
    tls_port = free_port()
    # Pebble rejects 10 % of nonces with badNonce: with about fifteen signed requests per
    # certificate most attempts meet some; the client retries them and still succeeds.
    with running_pebble(tmp_path / "pebble", http_port=free_port(), tls_port=tls_port, nonce_reject=10) as pebble:
        args = [
            "--bind",
            f"127.0.0.1:{tls_port}",
            *acme_args(pebble, tmp_path / "acme", "e.test"),
            "tests.apps.basic:app",
        ]
        with gateway_process(*args, plain=False) as server:
            wait_issued(server, "e.test", timeout=120)
            assert verified_get(pebble, tls_port, "e.test").status_code == 200


@pytest.mark.slow
def test_invalid_challenge_is_one_clear_line_then_retried_and_the_placeholder_stays(tmp_path: Path) -> None:
    tls_port = free_port()
    # Pebble validates on a port nobody listens on: every validation fails.
    with running_pebble(tmp_path / "pebble", http_port=free_port(), tls_port=free_port()) as pebble:
        args = [
            "--bind",
            f"127.0.0.1:{tls_port}",
            *acme_args(pebble, tmp_path / "acme", "f.test"),
            "tests.apps.basic:app",
        ]
        with gateway_process(*args, plain=False) as server:
            line = server.wait_for(
                r"ACME: certificate for f\.test failed: validation failed: f\.test \(tls-alpn-01\): .*", 60
            )
            assert "next attempt in 5s" in line.group(0)
            server.wait_for(r"ACME: certificate for f\.test failed: .*next attempt in 30s", 30)
            assert "Traceback" not in server.stderr
            # Still serving TLS with the placeholder (untrusted by the CA's root).
            with pytest.raises(httpx.ConnectError):
                verified_get(pebble, tls_port, "f.test")
            assert served_serial(tls_port, "f.test") > 0


def test_without_agree_tos_the_error_names_the_terms(pebble: Pebble, tmp_path: Path, tls_port: int) -> None:
    args = [a for a in acme_args(pebble, tmp_path / "acme", "g.test") if a != "--acme-agree-tos"]
    result = run_gateway("--bind", f"127.0.0.1:{tls_port}", *args, "tests.apps.basic:app", plain=False, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--acme-domain needs --acme-agree-tos" in lines[0]
    assert "data:text/plain,Do%20what%20thou%20wilt" in lines[0]  # Pebble's terms URL


def test_acme_domain_with_cert_is_one_line(tmp_path: Path) -> None:
    result = run_gateway(
        "--acme-domain", "a.test", "--acme-agree-tos", "--cert", "c.pem", "--key", "k.pem", "x:y", plain=False
    )
    assert result.returncode == 2
    assert "--acme-domain excludes --cert and --no-tls" in result.stderr
