"""The answers an ACME CA checks, kept as files so every worker process can serve them.

The process that talks to the CA writes an answer before telling the CA to validate and
removes it afterwards; whichever worker the CA's validation connection reaches reads it.
Reads happen only for requests under ``/.well-known/acme-challenge/`` and for ClientHellos
that offer nothing but ``acme-tls/1``, so the files cost normal traffic nothing.

- http-01 (RFC 8555 §8.3): ``GET /.well-known/acme-challenge/<token>`` on port 80 answers
  the key authorization as text.
- tls-alpn-01 (RFC 8737): a TLS handshake on port 443 with SNI ``<name>`` and ALPN
  ``acme-tls/1`` gets a self-signed certificate for ``<name>`` carrying the SHA-256 of the
  key authorization in a critical acmeIdentifier extension; nothing else happens on that
  connection. Only names being validated have such a certificate.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from gateway import devcerts
from gateway.acme.storage import self_signed

HTTP01_PREFIX = "/.well-known/acme-challenge/"
ACME_TLS_ALPN = "acme-tls/1"
# id-pe-acmeIdentifier (RFC 8737 §3).
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
# Tokens are base64url (RFC 8555 §8.1): anything else is never a file name we look up.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_NAME = re.compile(r"^[a-z0-9.-]{1,253}$")


class ChallengeFiles:
    """The ``challenges`` folder of ``--acme-dir``: written by the issuer, read by listeners."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http01 = folder / "http-01"
        self.tlsalpn01 = folder / "tls-alpn-01"

    # -- the issuer's side -------------------------------------------------------------

    def put_http01(self, token: str, key_authorization: str) -> None:
        self.http01.mkdir(parents=True, exist_ok=True)
        devcerts.write_atomic(self.http01 / token, key_authorization.encode("ascii"))

    def remove_http01(self, token: str) -> None:
        (self.http01 / token).unlink(missing_ok=True)

    def put_tlsalpn01(self, name: str, key_authorization: str) -> None:
        self.tlsalpn01.mkdir(parents=True, exist_ok=True)
        devcerts.write_atomic(self.tlsalpn01 / f"{name}.pem", tls_alpn_certificate(name, key_authorization), True)

    def remove_tlsalpn01(self, name: str) -> None:
        (self.tlsalpn01 / f"{name}.pem").unlink(missing_ok=True)

    # -- the listeners' side -----------------------------------------------------------

    def http01_answer(self, path: str) -> bytes | None:
        """The body for ``GET path``, or None when no such challenge is being validated."""
        token = path[len(HTTP01_PREFIX) :] if path.startswith(HTTP01_PREFIX) else ""
        if not _TOKEN.match(token):
            return None
        try:
            return (self.http01 / token).read_bytes()
        except OSError:
            return None

    def tlsalpn01_context(self, server_name: str) -> ssl.SSLContext | None:
        """A context serving the challenge certificate for ``server_name``, or None."""
        name = server_name.lower().rstrip(".")
        if not _NAME.match(name):
            return None
        path = self.tlsalpn01 / f"{name}.pem"
        if not path.is_file():
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # RFC 8737 §3: the validation handshake must use TLS 1.2 or later.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols([ACME_TLS_ALPN])
        try:
            context.load_cert_chain(path)
        except (OSError, ssl.SSLError):  # removed between the check and the load
            return None
        return context


def tls_alpn_certificate(name: str, key_authorization: str) -> bytes:
    """PEM certificate and key for a tls-alpn-01 validation of ``name`` (RFC 8737 §3)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    # The extension's value is the DER encoding of an OCTET STRING holding the digest.
    identifier = x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest)
    cert_pem, key_pem = self_signed(name, [name], 1, ((identifier, True),))
    return cert_pem + key_pem
