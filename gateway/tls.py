"""TLS: every ``ssl.SSLContext`` the server uses is built here.

Settings follow current edge-server practice: TLS 1.2 at least (``--tls-min-version``), the
server's cipher order, no TLS compression (CRIME), no renegotiation, ALPN to choose the HTTP
version. Certificates and keys are checked with ``cryptography`` before OpenSSL sees them,
so every mistake becomes one clear line instead of an OpenSSL error code.

One listener context serves every handshake. Its SNI callback hands each connection the
context of the matching ``--sni-cert`` (or the default certificate); reloading builds a
fresh set of contexts and swaps them in, so open connections keep the certificate they were
accepted with and new handshakes get the new one (see :class:`CertificateSet`).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from gateway.config import BindAddress, Config, ConfigError

log = logging.getLogger("gateway.error")

# ASGI TLS extension: tls_version is the TLS record version number (RFC 8446 §5.1 etc.).
_TLS_VERSION_NUMBERS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_MINIMUM_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TLSConfigError(ConfigError):
    """A certificate or key cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class CertificateSource:
    """One certificate/key pair to serve; ``host`` is None for the default one."""

    host: str | None
    certfile: str
    keyfile: str


def certificate_sources(config: Config) -> list[CertificateSource]:
    """The default certificate first, then each ``--sni-cert HOST=CERT,KEY``."""
    assert config.certfile is not None and config.keyfile is not None
    sources = [CertificateSource(None, config.certfile, config.keyfile)]
    for entry in config.sni_certs:
        host, _, files = entry.partition("=")
        certfile, _, keyfile = files.partition(",")
        sources.append(CertificateSource(host.strip().lower().rstrip("."), certfile.strip(), keyfile.strip()))
    return sources


def _read(path: str, what: str) -> bytes:
    if not os.path.exists(path):
        raise TLSConfigError(f"{what} file not found: {path}")
    if not os.path.isfile(path):
        raise TLSConfigError(f"{what} path is not a file: {path}")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise TLSConfigError(f"{what} file is not readable: {path} ({exc.strerror})") from None


def _load_key(data: bytes, keyfile: str, password: str | None) -> object:
    """Parse a PEM key: RSA or EC in PKCS#1/SEC1 ("traditional") or PKCS#8, encrypted or not."""
    secret = password.encode() if password is not None else None
    try:
        return serialization.load_pem_private_key(data, secret)
    except TypeError:
        if secret is None:
            raise TLSConfigError(f"key {keyfile} is encrypted: give --key-password or $ASGIGW_KEY_PASSWORD") from None
        # A password for a key that has none: harmless, as OpenSSL also ignores it.
        return serialization.load_pem_private_key(data, None)
    except ValueError as exc:
        if secret is not None and b"ENCRYPTED" in data:
            raise TLSConfigError(f"wrong --key-password for key {keyfile}") from None
        raise TLSConfigError(f"cannot read key {keyfile} as a PEM private key ({exc})") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and others
        raise TLSConfigError(f"cannot read key {keyfile}: {exc}") from None


def check_certificate(
    source: CertificateSource, password: str | None, allow_expired: bool, now: datetime.datetime | None = None
) -> list[x509.Certificate]:
    """Read and check one pair; return the chain (leaf first) or raise TLSConfigError."""
    chain_data = _read(source.certfile, "certificate")
    key_data = _read(source.keyfile, "key")
    try:
        chain = x509.load_pem_x509_certificates(chain_data)
    except ValueError:
        raise TLSConfigError(f"certificate file {source.certfile} holds no PEM certificate") from None
    key = _load_key(key_data, source.keyfile, password)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    ):
        raise TLSConfigError(f"key {source.keyfile}: unsupported key type {type(key).__name__}")
    leaf = chain[0]
    if key.public_key() != leaf.public_key():
        raise TLSConfigError(f"key {source.keyfile} does not match certificate {source.certfile}")
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now and not allow_expired:
        raise TLSConfigError(
            f"certificate {source.certfile} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC;"
            " renew it or pass --allow-expired"
        )
    return chain


def certificate_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {name.lower() for name in names.get_values_for_type(x509.DNSName)}
    return dns, {str(address) for address in names.get_values_for_type(x509.IPAddress)}


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4.3: a ``*`` matches exactly one whole left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def names_warning(cert: x509.Certificate, certfile: str, addresses: Sequence[BindAddress]) -> str | None:
    """A warning when the certificate covers none of the specific addresses bound."""
    dns, ips = certificate_names(cert)
    hosts: list[str] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            hosts.append(address.host)
            continue
        if ip.is_unspecified:  # 0.0.0.0 / ::: any name may reach it, nothing to compare
            return None
        hosts.append(str(ip))
    for host in hosts:
        if host in ips or any(name_matches(pattern, host) for pattern in dns):
            return None
    listed = ", ".join(sorted(dns | ips)) or "no subjectAltName"
    return f"certificate {certfile} is not valid for any bound name ({', '.join(hosts)}); it covers: {listed}"


class ServerSSLContext(ssl.SSLContext):
    """An SSLContext that also remembers what the ASGI ``tls`` extension reports about it."""

    server_cert_pem: str | None = None
    not_after: datetime.datetime | None = None
    cipher_ids: dict[str, int]
    certificates: CertificateSet | None = None


def _new_context(config: Config, alpn_protocols: Sequence[str]) -> ServerSSLContext:
    context = ServerSSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM_VERSIONS[config.tls_min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if config.ciphers:
        # OpenSSL's cipher string sets TLS 1.2 suites only; TLS 1.3 suites are all strong.
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"--ciphers {config.ciphers!r}: OpenSSL knows no cipher in this list") from None
    if config.ca_certs:
        _read(config.ca_certs, "--ca-certs")
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"--ca-certs {config.ca_certs}: not a PEM CA bundle ({exc.reason})") from None
    context.verify_mode = _VERIFY_MODES[config.client_cert]
    context.set_alpn_protocols(list(alpn_protocols))
    return context


def _context_for(source: CertificateSource, config: Config, alpn_protocols: Sequence[str]) -> ServerSSLContext:
    chain = check_certificate(source, config.key_password, config.allow_expired)
    context = _new_context(config, alpn_protocols)
    password = config.key_password

    def give_password() -> str:
        # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
        if password is None:
            raise TLSConfigError(f"key {source.keyfile} is encrypted: give --key-password")
        return password

    try:
        context.load_cert_chain(source.certfile, source.keyfile, give_password)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"cannot load certificate {source.certfile} with key {source.keyfile}: {exc.reason}"
        ) from None
    context.server_cert_pem = chain[0].public_bytes(serialization.Encoding.PEM).decode("ascii")
    context.not_after = chain[0].not_valid_after_utc
    # The ASGI extension wants the IANA cipher suite number: the low 16 bits of OpenSSL's id.
    context.cipher_ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
    return context


class CertificateSet:
    """The contexts for one generation of certificate files, and the switch between them.

    ``listener_context`` is given to the listening sockets once; its SNI callback moves each
    new handshake onto the current generation's context for the requested server name.
    """

    def __init__(self, config: Config, alpn_protocols: Sequence[str]) -> None:
        self.config = config
        self.alpn_protocols = tuple(alpn_protocols)
        self.sources = certificate_sources(config)
        self._default, self._by_host = self._build()
        self.listener_context = self._default
        self.generation = 1

    def _build(self) -> tuple[ServerSSLContext, dict[str, ServerSSLContext]]:
        contexts = [_context_for(source, self.config, self.alpn_protocols) for source in self.sources]
        for context in contexts:
            context.sni_callback = self._select
            context.certificates = self
        by_host = {
            source.host: context
            for source, context in zip(self.sources, contexts, strict=True)
            if source.host is not None
        }
        return contexts[0], by_host

    @property
    def default_not_after(self) -> datetime.datetime | None:
        """When the default certificate now served expires."""
        return self._default.not_after

    def files(self) -> list[str]:
        """Every certificate, key and client CA file in use (what the reload poller watches)."""
        files = [path for source in self.sources for path in (source.certfile, source.keyfile)]
        return [*files, self.config.ca_certs] if self.config.ca_certs else files

    def context_for(self, server_name: str | None) -> ServerSSLContext:
        """The context for a client's SNI name: exact match, then wildcard, then the default."""
        if server_name:
            name = server_name.lower().rstrip(".")
            exact = self._by_host.get(name)
            if exact is not None:
                return exact
            for host, context in self._by_host.items():
                if host.startswith("*.") and name_matches(host, name):
                    return context
        return self._default

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        # Called for every ClientHello, with server_name None when the client sent no SNI
        # (RFC 6066 §3), so a reloaded default certificate reaches those clients too.
        chosen = self.context_for(server_name)
        if ssl_object.context is not chosen:
            ssl_object.context = chosen

    def reload(self) -> None:
        """Re-read every file; on success new handshakes use them, else raise TLSConfigError."""
        self._default, self._by_host = self._build()
        self.generation += 1


def create_server_context(config: Config, alpn_protocols: Sequence[str] | None = None) -> ssl.SSLContext:
    """The listener context for ``config``'s certificates; raises TLSConfigError.

    ALPN offers ``h2`` before ``http/1.1`` unless HTTP/2 is off (RFC 9113 §3.2).
    ``context.certificates`` (a :class:`CertificateSet`) reloads the files later.
    """
    if alpn_protocols is None:
        alpn_protocols = ("h2", "http/1.1") if config.http2 else ("http/1.1",)
    return CertificateSet(config, alpn_protocols).listener_context


def startup_warnings(config: Config) -> list[str]:
    """Non-fatal problems worth a log line at start-up (a certificate for the wrong name)."""
    if config.certfile is None or config.keyfile is None:
        return []
    try:
        chain = check_certificate(CertificateSource(None, config.certfile, config.keyfile), config.key_password, True)
    except TLSConfigError:
        return []
    warnings = []
    warning = names_warning(chain[0], config.certfile, config.addresses)
    if warning:
        warnings.append(warning)
    now = datetime.datetime.now(datetime.UTC)
    if chain[0].not_valid_after_utc < now:
        warnings.append(f"certificate {config.certfile} has expired; serving it because of --allow-expired")
    if chain[0].not_valid_before_utc > now:
        start = f"{chain[0].not_valid_before_utc:%Y-%m-%d %H:%M}"
        warnings.append(f"certificate {config.certfile} is not valid before {start} UTC; clients will reject it")
    return warnings


def _pem_chain(ssl_object: ssl.SSLObject, leaf_der: bytes) -> list[str]:
    """The chain the client sent, leaf first, as PEM strings (leaf only if unavailable)."""
    chain_method = getattr(ssl_object, "get_unverified_chain", None)
    if chain_method is None:  # Python < 3.13 keeps it on the private C object
        chain_method = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    ders: list[bytes] = []
    try:
        for item in chain_method() if chain_method is not None else ():
            # 3.13+ returns DER bytes; the private 3.10-3.12 objects give PEM text by default.
            ders.append(item if isinstance(item, bytes) else ssl.PEM_cert_to_DER_cert(item.public_bytes()))
    except (ssl.SSLError, AttributeError, ValueError):
        ders = []
    if not ders or ders[0] != leaf_der:
        ders.insert(0, leaf_der)
    return [ssl.DER_cert_to_PEM_cert(der) for der in ders]


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, object]:
    """The ASGI ``tls`` scope extension for one connection (computed once per connection).

    ``client_cert_error`` is always None: OpenSSL ends the handshake when a presented client
    certificate fails verification, so a connection that reaches the app has none.
    """
    context = ssl_object.context
    cipher = ssl_object.cipher()
    cipher_ids: dict[str, int] = getattr(context, "cipher_ids", {})
    leaf_der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if leaf_der:
        chain = _pem_chain(ssl_object, leaf_der)
        try:
            name = x509.load_der_x509_certificate(leaf_der).subject.rfc4514_string()
        except ValueError:
            name = None
    return {
        "server_cert": getattr(context, "server_cert_pem", None),
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSION_NUMBERS.get(ssl_object.version() or ""),
        "cipher_suite": cipher_ids.get(cipher[0]) if cipher else None,
    }
