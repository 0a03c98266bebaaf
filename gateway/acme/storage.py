"""Where ACME state lives: ``--acme-dir`` (default: next to the development CA).

Layout (one account per CA directory URL, so staging and production never mix)::

    <acme-dir>/accounts/<ca>/account.key    the account's private key (0600 on POSIX)
    <acme-dir>/accounts/<ca>/account.json   its URL at that CA
    <acme-dir>/certificates/<name>/cert.pem the chain served for <name> (and its SAN set)
    <acme-dir>/certificates/<name>/key.pem  its private key (0600)
    <acme-dir>/certificates/<name>/placeholder   present while cert.pem is self-signed
    <acme-dir>/challenges/...               answers being validated (challenges.py)
    <acme-dir>/lock                         held while talking to the CA

Back up ``accounts/``: a lost account key is only a new registration away, but certificates
issued to it can then no longer be revoked with it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import devcerts

ENV_ACME_DIR = "ASGIGW_ACME_DIR"
# How long the self-signed placeholder served before the first certificate arrives lasts.
PLACEHOLDER_DAYS = 7


def acme_folder(acme_dir: str | None = None, environ: dict[str, str] | None = None) -> Path:
    """``--acme-dir``, else ``$ASGIGW_ACME_DIR``, else ``acme`` in asgigw's data folder."""
    environ = dict(os.environ) if environ is None else environ
    if acme_dir:
        return Path(acme_dir)
    if environ.get(ENV_ACME_DIR):
        return Path(environ[ENV_ACME_DIR])
    return devcerts.data_folder(environ=environ) / "acme"


def _ca_label(directory_url: str) -> str:
    # Readable and unique: the CA's host plus a short hash of the whole directory URL.
    host = re.sub(r"[^A-Za-z0-9.-]", "_", directory_url.split("//", 1)[-1].split("/", 1)[0])
    return f"{host}-{hashlib.sha256(directory_url.encode()).hexdigest()[:8]}"


def _safe_name(name: str) -> str:
    return name.replace("*", "_wildcard_").replace("/", "_").replace("\\", "_")


@dataclass(frozen=True)
class CertificatePaths:
    """The files served for one certificate (a name and its SAN set)."""

    folder: Path

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"

    @property
    def placeholder_marker(self) -> Path:
        return self.folder / "placeholder"

    def is_placeholder(self) -> bool:
        """True while the files hold the self-signed stand-in, not a CA's certificate."""
        return self.placeholder_marker.exists()

    def exists(self) -> bool:
        return self.cert.is_file() and self.key.is_file()

    def not_after(self) -> datetime.datetime | None:
        """When the stored certificate expires (None if there is none or it is unreadable)."""
        try:
            return x509.load_pem_x509_certificate(self.cert.read_bytes()).not_valid_after_utc
        except (OSError, ValueError):
            return None

    def names(self) -> set[str]:
        """The DNS names the stored certificate covers."""
        try:
            cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return set()
        return {name.lower() for name in san.get_values_for_type(x509.DNSName)}

    def store(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Replace the served files (key first, each by rename) and drop the placeholder mark."""
        self.folder.mkdir(parents=True, exist_ok=True)
        devcerts.write_atomic(self.key, key_pem, private=True)
        devcerts.write_atomic(self.cert, chain_pem)
        self.placeholder_marker.unlink(missing_ok=True)

    def store_placeholder(self, names: list[str]) -> None:
        """A self-signed certificate for ``names``: TLS works (with a warning) until the real one."""
        cert_pem, key_pem = self_signed(f"{names[0]} (asgigw: waiting for ACME)", names, PLACEHOLDER_DAYS)
        self.store(cert_pem, key_pem)
        self.placeholder_marker.write_text("self-signed until the ACME CA issues the certificate\n")


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (every key asgigw keeps for ACME)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def self_signed(
    common_name: str, names: list[str], days: float, extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()
) -> tuple[bytes, bytes]:
    """A fresh EC key and a self-signed certificate for ``names``: (certificate PEM, key PEM).

    ``extensions`` are (extension, critical) pairs added after the subjectAltName.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


class AcmeStorage:
    """The ``--acme-dir`` folder for one CA directory URL."""

    def __init__(self, folder: Path, directory_url: str) -> None:
        self.folder = folder
        self.directory_url = directory_url
        self.account_folder = folder / "accounts" / _ca_label(directory_url)
        self.challenge_folder = folder / "challenges"
        self.lock_path = folder / "lock"

    def prepare(self) -> None:
        """Create the folders (private on POSIX: they hold keys)."""
        for path in (self.folder, self.account_folder, self.folder / "certificates", self.challenge_folder):
            path.mkdir(parents=True, exist_ok=True)
            if os.name == "posix":
                os.chmod(path, 0o700)

    def certificate(self, names: list[str]) -> CertificatePaths:
        """The files of the certificate whose first name is ``names[0]``."""
        return CertificatePaths(self.folder / "certificates" / _safe_name(names[0].lower()))

    @property
    def account_key_path(self) -> Path:
        return self.account_folder / "account.key"

    def load_account_key(self) -> bytes | None:
        try:
            return self.account_key_path.read_bytes()
        except FileNotFoundError:
            return None

    def save_account_key(self, key_pem: bytes) -> None:
        devcerts.write_atomic(self.account_key_path, key_pem, private=True)

    def load_account_url(self) -> str | None:
        try:
            data = json.loads((self.account_folder / "account.json").read_text())
        except (OSError, ValueError):
            return None
        url = data.get("url") if isinstance(data, dict) else None
        return url if isinstance(url, str) else None

    def save_account_url(self, url: str) -> None:
        record = json.dumps({"url": url, "directory": self.directory_url}, indent=2).encode()
        devcerts.write_atomic(self.account_folder / "account.json", record)
