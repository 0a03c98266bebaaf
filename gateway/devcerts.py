"""Local HTTPS without openssl: a local certificate authority and short-lived leaf certificates.

The first time asgigw serves without ``--cert`` it creates a CA (valid ten years) in the
user's data folder and issues a leaf certificate for ``localhost``, ``127.0.0.1``, ``::1``,
the machine's host name and any ``--dev-name``. Leaves live 30 days and are re-issued at
start-up and while running once fewer than 10 days remain, so nothing ever expires under a
developer's feet. ``asgigw certs trust`` puts the CA into the OS trust store
(:mod:`gateway.trust_store`); after that browsers and ``curl`` accept every leaf.

Keys are EC P-256: fast to generate and accepted by every current browser and OpenSSL.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
DEV_CERT_FILE = "dev-cert.pem"
DEV_KEY_FILE = "dev-key.pem"
CA_NAME = "asgigw local development CA"
CA_DAYS = 3650
LEAF_DAYS = 30
RENEW_BEFORE = datetime.timedelta(days=10)
ENV_CA_DIR = "ASGIGW_CA_DIR"


class DevCertError(Exception):
    """The local CA or a development certificate cannot be created or read."""


def data_folder(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user folder asgigw keeps its CA in, following each OS's convention."""
    home = Path(environ.get("HOME") or environ.get("USERPROFILE") or Path.home())
    if platform == "win32":
        base = environ.get("LOCALAPPDATA")
        return Path(base) / "asgigw" if base else home / "AppData" / "Local" / "asgigw"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "asgigw"
    # XDG Base Directory spec: an empty or relative XDG_DATA_HOME must be ignored.
    xdg = environ.get("XDG_DATA_HOME", "")
    return Path(xdg) / "asgigw" if os.path.isabs(xdg) else home / ".local" / "share" / "asgigw"


def ca_folder(ca_dir: str | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """``--ca-dir`` if given, else ``$ASGIGW_CA_DIR``, else :func:`data_folder`."""
    if ca_dir:
        return Path(ca_dir)
    if environ.get(ENV_CA_DIR):
        return Path(environ[ENV_CA_DIR])
    return data_folder(environ=environ)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated hex, the form browsers display."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_atomic(path: Path, data: bytes, private: bool = False) -> None:
    # Write then rename, so a server reloading the file never reads half of it.
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _subject_alternative_names(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


@dataclass(frozen=True)
class CertificateAuthority:
    """The local CA: its certificate, private key and the folder they live in."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    folder: Path

    @property
    def cert_path(self) -> Path:
        """Where the CA certificate (the file to trust) is stored."""
        return self.folder / CA_CERT_FILE

    @classmethod
    def load_or_create(cls, folder: Path) -> CertificateAuthority:
        """Load the CA from ``folder``, creating folder and CA the first time."""
        cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            return cls.load(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            authority = cls.create(folder)
            write_atomic(key_path, _key_pem(authority.key), private=True)
            write_atomic(cert_path, _cert_pem(authority.cert))
        except OSError as exc:
            raise DevCertError(f"cannot create the local CA in {folder}: {exc.strerror or exc}") from None
        return authority

    @classmethod
    def load(cls, folder: Path) -> CertificateAuthority:
        """Read an existing CA; raise DevCertError naming the file when that fails."""
        cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as exc:
            raise DevCertError(f"cannot read the local CA: {exc.filename}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise DevCertError(
                f"the local CA in {folder} is damaged ({exc}); delete the folder to start over"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise DevCertError(f"the local CA key in {folder} does not match its certificate")
        return cls(cert, key, folder)

    @classmethod
    def create(cls, folder: Path, now: datetime.datetime | None = None) -> CertificateAuthority:
        """A new self-signed CA valid for :data:`CA_DAYS` (not written to disk)."""
        now = now or _now()
        key = ec.generate_private_key(ec.SECP256R1())
        user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "asgigw development CA"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME} ({user}@{socket.gethostname()})"[:64]),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            # path_length=0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key, folder)

    def issue(
        self, names: Sequence[str], days: int = LEAF_DAYS, now: datetime.datetime | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A server certificate for ``names`` (DNS names or IP addresses) and its new key."""
        if not names:
            raise DevCertError("a certificate needs at least one name")
        now = now or _now()
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = min(now + datetime.timedelta(days=days), self.cert.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(not_after)
            # RFC 6125 §6.4.4: clients match names against subjectAltName, not the CN.
            .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def dev_names(extra: Iterable[str] = (), hostname: str | None = None) -> list[str]:
    """Names a development certificate covers: loopback, this machine, and ``extra``."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = (hostname if hostname is not None else socket.gethostname()).lower()
    for name in (host, *extra):
        if name and name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class DevCertificate:
    """A development certificate on disk and what the start-up line tells about it."""

    cert_path: Path
    key_path: Path
    ca_path: Path
    names: tuple[str, ...]
    not_after: datetime.datetime
    fingerprint: str
    renewed: bool


def _covered_names(cert: x509.Certificate) -> set[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found: set[str] = {str(address) for address in extension.get_values_for_type(x509.IPAddress)}
    found.update(name.lower() for name in extension.get_values_for_type(x509.DNSName))
    return found


def _current_leaf(
    authority: CertificateAuthority, cert_path: Path, key_path: Path, names: Sequence[str], now: datetime.datetime
) -> x509.Certificate | None:
    """The leaf on disk if it can still be used as is, else None (so it is re-issued)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if key.public_key() != cert.public_key() or cert.issuer != authority.cert.subject:
        return None
    try:
        cert.verify_directly_issued_by(authority.cert)
    except (ValueError, TypeError, InvalidSignature):
        return None
    if cert.not_valid_after_utc - now < RENEW_BEFORE or not set(names) <= _covered_names(cert):
        return None
    return cert


def ensure_dev_certificate(
    folder: Path, extra_names: Iterable[str] = (), now: datetime.datetime | None = None
) -> DevCertificate:
    """The development certificate in ``folder``, (re-)issued when missing or near expiry."""
    now = now or _now()
    authority = CertificateAuthority.load_or_create(folder)
    if authority.cert.not_valid_after_utc <= now:
        raise DevCertError(f"the local CA {authority.cert_path} has expired; delete {folder} to create a new one")
    names = dev_names(name.lower() for name in extra_names)
    cert_path, key_path = folder / DEV_CERT_FILE, folder / DEV_KEY_FILE
    cert = _current_leaf(authority, cert_path, key_path, names, now)
    renewed = cert is None
    if cert is None:
        cert, key = authority.issue(names, now=now)
        try:
            # Key first: a reload that sees the new key before the new cert fails the
            # key/cert check and keeps the old pair until the cert follows.
            write_atomic(key_path, _key_pem(key), private=True)
            write_atomic(cert_path, _cert_pem(cert))
        except OSError as exc:
            raise DevCertError(f"cannot write the development certificate in {folder}: {exc.strerror}") from None
    return DevCertificate(
        cert_path=cert_path,
        key_path=key_path,
        ca_path=authority.cert_path,
        names=tuple(sorted(_covered_names(cert))),
        not_after=cert.not_valid_after_utc,
        fingerprint=fingerprint(cert),
        renewed=renewed,
    )


def system_trusts(ca_path: Path) -> bool:
    """True when the CA is in the trust store Python's ssl module loads by default.

    That is the system bundle on Linux and the certificate stores on Windows; on macOS
    Python does not read the keychain, so the answer there is False even after ``trust``.
    """
    try:
        wanted = ssl.PEM_cert_to_DER_cert(ca_path.read_text(encoding="ascii"))
        return wanted in ssl.create_default_context().get_ca_certs(binary_form=True)
    except (OSError, ValueError, ssl.SSLError):
        return False


def file_stem(name: str) -> str:
    """A file name for a certificate named ``name`` (``*.example.test`` -> ``_wildcard.example.test``)."""
    stem = name.replace("*", "_wildcard")
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)


def issue_files(
    names: Sequence[str], out_folder: Path, authority: CertificateAuthority, days: int = 365
) -> tuple[Path, Path]:
    """Write a certificate for ``names`` and its key into ``out_folder``; return both paths.

    The certificate file holds the leaf followed by the CA, a full chain as servers expect.
    """
    cert, key = authority.issue(names, days=days)
    stem = file_stem(names[0])
    cert_path, key_path = out_folder / f"{stem}.pem", out_folder / f"{stem}-key.pem"
    try:
        out_folder.mkdir(parents=True, exist_ok=True)
        write_atomic(key_path, _key_pem(key), private=True)
        write_atomic(cert_path, _cert_pem(cert) + _cert_pem(authority.cert))
    except OSError as exc:
        raise DevCertError(f"cannot write into {out_folder}: {exc.strerror or exc}") from None
    return cert_path, key_path


def describe(folder: Path) -> list[str]:
    """Lines for ``asgigw certs show``: where things are, fingerprints, expiry."""
    lines = [f"folder:          {folder}"]
    for label, path in (("CA", folder / CA_CERT_FILE), ("dev certificate", folder / DEV_CERT_FILE)):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except OSError:
            lines.append(f"{label + ':':<16} {path} (not created yet)")
            continue
        except ValueError as exc:
            lines.append(f"{label + ':':<16} {path} (unreadable: {exc})")
            continue
        lines.append(f"{label + ':':<16} {path}")
        lines.append(f"  subject:       {cert.subject.rfc4514_string()}")
        if label != "CA":
            lines.append(f"  names:         {', '.join(sorted(_covered_names(cert)))}")
        lines.append(f"  SHA-256:       {fingerprint(cert)}")
        lines.append(f"  expires:       {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    return lines
