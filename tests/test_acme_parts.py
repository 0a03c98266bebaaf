"""The ACME parts that need no CA: ClientHello reading, the tls-alpn-01 certificate, the
storage folder, the placeholder, option checks. Pebble end-to-end is tests/test_acme.py."""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gateway.acme.challenges import ACME_IDENTIFIER_OID, ChallengeFiles, tls_alpn_certificate
from gateway.acme.storage import AcmeStorage, acme_folder
from gateway.client_hello import ClientHello, NotClientHello, parse_client_hello
from gateway.config import LETS_ENCRYPT, LETS_ENCRYPT_STAGING, Config, ConfigError


def client_hello(server_name: str | None, alpn: list[str] | None) -> bytes:
    """The first flight of a real OpenSSL client."""
    context = ssl.create_default_context()
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    if server_name is None:
        context.check_hostname = False
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# -- ClientHello ------------------------------------------------------------------------------


def test_client_hello_name_and_alpn() -> None:
    hello = client_hello("A.Example.com", ["acme-tls/1"])
    assert parse_client_hello(hello) == ClientHello("a.example.com", ("acme-tls/1",))
    assert parse_client_hello(client_hello("b.test", ["h2", "http/1.1"])) == ClientHello("b.test", ("h2", "http/1.1"))
    assert parse_client_hello(client_hello(None, None)) == ClientHello(None, ())


def test_client_hello_needs_all_its_bytes_whatever_the_split() -> None:
    hello = client_hello("split.test", ["acme-tls/1"])
    for end in range(len(hello)):
        assert parse_client_hello(hello[:end]) is None
    assert parse_client_hello(hello + b"trailing bytes of the next record") is not None


def test_client_hello_across_two_records() -> None:
    hello = client_hello("records.test", ["h2"])
    body = hello[5:]
    half = len(body) // 2
    two = b"\x16\x03\x01" + half.to_bytes(2, "big") + body[:half]
    two += b"\x16\x03\x01" + (len(body) - half).to_bytes(2, "big") + body[half:]
    assert parse_client_hello(two) == ClientHello("records.test", ("h2",))


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x00",  # an empty record
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello, not a ClientHello
        b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",  # cut short inside the body
        b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",  # announces 16 MiB
    ],
)
def test_not_a_client_hello(data: bytes) -> None:
    with pytest.raises(NotClientHello):
        parse_client_hello(data)


# -- tls-alpn-01 --------------------------------------------------------------------------------


def test_tls_alpn_certificate_follows_rfc_8737() -> None:
    pem = tls_alpn_certificate("a.test", "token.thumbprint")
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["a.test"]
    identifier = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert identifier.critical
    assert identifier.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumbprint").digest()


def test_challenge_files_serve_only_what_is_being_validated(tmp_path: Path) -> None:
    files = ChallengeFiles(tmp_path)
    token = "A" * 43
    assert files.http01_answer(f"/.well-known/acme-challenge/{token}") is None
    files.put_http01(token, f"{token}.key")
    assert files.http01_answer(f"/.well-known/acme-challenge/{token}") == f"{token}.key".encode()
    assert files.http01_answer("/.well-known/acme-challenge/../../etc/passwd") is None
    assert files.http01_answer("/other/" + token) is None
    files.remove_http01(token)
    assert files.http01_answer(f"/.well-known/acme-challenge/{token}") is None

    assert files.tlsalpn01_context("a.test") is None
    files.put_tlsalpn01("a.test", "token.thumbprint")
    context = files.tlsalpn01_context("A.TEST.")
    assert context is not None and context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert files.tlsalpn01_context("../a.test") is None
    files.remove_tlsalpn01("a.test")
    assert files.tlsalpn01_context("a.test") is None


# -- storage ------------------------------------------------------------------------------------


def test_storage_keeps_accounts_per_ca_and_keys_private(tmp_path: Path) -> None:
    production = AcmeStorage(tmp_path, LETS_ENCRYPT)
    staging = AcmeStorage(tmp_path, LETS_ENCRYPT_STAGING)
    assert production.account_folder != staging.account_folder
    production.prepare()
    production.save_account_key(b"-----BEGIN PRIVATE KEY-----\n")
    production.save_account_url("https://ca.test/acct/1")
    assert production.load_account_url() == "https://ca.test/acct/1"
    assert staging.load_account_url() is None
    if sys.platform != "win32":
        assert production.account_key_path.stat().st_mode & 0o777 == 0o600
        assert production.folder.stat().st_mode & 0o777 == 0o700


def test_placeholder_covers_the_names_and_is_marked(tmp_path: Path) -> None:
    paths = AcmeStorage(tmp_path, LETS_ENCRYPT).certificate(["a.test", "b.test"])
    paths.store_placeholder(["a.test", "b.test"])
    assert paths.is_placeholder()
    assert paths.names() == {"a.test", "b.test"}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths.cert, paths.key)  # a usable pair
    paths.store(paths.cert.read_bytes(), paths.key.read_bytes())
    assert not paths.is_placeholder()


def test_acme_dir_default_and_environment(tmp_path: Path) -> None:
    assert acme_folder(str(tmp_path)) == tmp_path
    assert acme_folder(None, {"ASGIGW_ACME_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    assert acme_folder(None, {"HOME": str(tmp_path)}).parts[-2:] == ("asgigw", "acme")


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"acme_email": "a@b.test"}, "--acme-email needs --acme-domain NAME"),
        ({"acme_domains": ("localhost",)}, "'localhost' is not a DNS name a CA can validate"),
        ({"acme_domains": ("*.example.com",)}, "is not a DNS name a CA can validate"),
        ({"acme_domains": ("a.test,10.0.0.1",)}, "'10.0.0.1' is not a DNS name"),
        ({"acme_domains": ("a.test",), "acme_staging": True, "acme_directory": "https://x.test/dir"}, "exclude"),
        ({"acme_domains": ("a.test",), "acme_directory": "http://x.test/dir"}, "must be an https:// URL"),
        ({"acme_domains": ("a.test",), "acme_eab_kid": "kid"}, "--acme-eab-kid and --acme-eab-hmac"),
        ({"acme_domains": ("a.test",), "acme_ca_bundle": "/no/such/file"}, "no such file"),
    ],
)
def test_acme_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**options)  # type: ignore[arg-type]


def test_acme_directory_and_challenge_defaults() -> None:
    config = Config(acme_domains=("a.test",), acme_agree_tos=True)
    assert config.tls
    assert config.acme_directory_url == LETS_ENCRYPT
    assert config.acme_challenge_type == "tls-alpn-01"
    assert Config(acme_domains=("a.test",), acme_staging=True).acme_directory_url == LETS_ENCRYPT_STAGING
    assert Config(acme_domains=("a.test",), acme_challenge="http-01").acme_challenge_type == "http-01"


def test_umask_does_not_matter_for_private_files(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        storage = AcmeStorage(tmp_path / "open", LETS_ENCRYPT)
        storage.prepare()
        storage.save_account_key(b"key")
    finally:
        os.umask(previous)
    if sys.platform != "win32":
        assert storage.account_key_path.stat().st_mode & 0o777 == 0o600
