"""The life of ACME certificates in a running server (or supervisor).

At start-up (:func:`prepare`, before the TLS context is built) every ``--acme-domain``
certificate is served from ``--acme-dir`` at once: the stored one, or, when there is none
yet, a self-signed placeholder for the same names, so the listener answers TLS with a
certificate browsers warn about instead of failing the handshake. :class:`CertificateManager`
then obtains missing certificates in the background and renews each at two thirds of its
lifetime (or when the CA's renewal information, RFC 9773, says so), with jitter. New files
go through the normal reload path (``on_new_certificate``), so open connections are kept.
A failure is one log line and a retry later; a still-valid certificate is never dropped;
warnings start 14 days before expiry. Only one process talks to the CA: the supervisor
with ``--workers``, and a lock file against a second server sharing the folder.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from gateway import platform
from gateway.acme.challenges import ChallengeFiles
from gateway.acme.issuer import AcmeAccountSettings, AcmeFailure, Issuer
from gateway.acme.storage import AcmeStorage, CertificatePaths, acme_folder
from gateway.config import Config, ConfigError

log = logging.getLogger("gateway.error")

# Seconds between attempts after a failure: growing, then once an hour (the CA's
# Retry-After wins when it says more). Let's Encrypt allows 5 failed validations per
# name per hour, so fast retries would only lock the name out.
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
EXPIRY_WARNING = datetime.timedelta(days=14)
# Renewal at this fraction of the lifetime when the CA gives no renewal information.
RENEW_AT = 2 / 3


@dataclass
class ManagedCertificate:
    """One certificate: its names (the first is its folder) and its files."""

    names: list[str]
    paths: CertificatePaths
    failures: int = 0
    due: datetime.datetime | None = None
    # The certificate file as it was when ``due`` was computed: if it differs under the
    # lock, another server sharing --acme-dir has renewed it meanwhile.
    seen: bytes | None = None


def certificate_name_sets(config: Config) -> list[list[str]]:
    """``--acme-domain a.example,b.example --acme-domain c.example`` -> [[a, b], [c]]."""
    return [[name.strip().lower() for name in entry.split(",") if name.strip()] for entry in config.acme_domains]


def storage_for(config: Config) -> AcmeStorage:
    return AcmeStorage(acme_folder(config.acme_dir), config.acme_directory_url)


def prepare(config: Config) -> Config:
    """Serve stored certificates (or placeholders) for every ``--acme-domain``: the new Config.

    The first certificate is the default one; every name of the others is an SNI entry.
    """
    storage = storage_for(config)
    if not config.acme_agree_tos:
        raise ConfigError(_terms_not_agreed(config, storage))
    storage.prepare()
    sni: list[str] = []
    default: CertificatePaths | None = None
    for names in certificate_name_sets(config):
        paths = storage.certificate(names)
        if not paths.exists() or not set(names) <= paths.names():
            log.info("ACME: no certificate for %s yet; serving a self-signed placeholder meanwhile", ", ".join(names))
            paths.store_placeholder(names)
        if default is None:
            default = paths
        else:
            sni += [f"{name}={paths.cert},{paths.key}" for name in names]
    assert default is not None
    return config.replace(certfile=str(default.cert), keyfile=str(default.key), sni_certs=(*config.sni_certs, *sni))


def _terms_not_agreed(config: Config, storage: AcmeStorage) -> str:
    """The one-line start-up error without --acme-agree-tos, naming the CA's terms."""
    issuer = Issuer(_account_settings(config), storage, ChallengeFiles(storage.challenge_folder))
    try:
        terms = issuer.terms_of_service() or "the CA publishes none in its directory"
    except AcmeFailure as failure:
        terms = f"could not be fetched: {failure}"
    return f"--acme-domain needs --acme-agree-tos: read the terms of service of {config.acme_directory_url} ({terms}) first"


def _account_settings(config: Config) -> AcmeAccountSettings:
    return AcmeAccountSettings(
        directory_url=config.acme_directory_url,
        email=config.acme_email,
        agree_tos=config.acme_agree_tos,
        ca_bundle=config.acme_ca_bundle,
        eab_kid=config.acme_eab_kid,
        eab_hmac=config.acme_eab_hmac,
    )


class CertificateManager:
    """Obtains and renews the ``--acme-domain`` certificates until stopped."""

    def __init__(self, config: Config, on_new_certificate: Callable[[str], object]) -> None:
        self.config = config
        self.storage = storage_for(config)
        self.issuer = Issuer(_account_settings(config), self.storage, ChallengeFiles(self.storage.challenge_folder))
        self.on_new_certificate = on_new_certificate
        self.certificates = [
            ManagedCertificate(names, self.storage.certificate(names)) for names in certificate_name_sets(config)
        ]
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        for certificate in self.certificates:
            certificate.due = await asyncio.to_thread(self._renewal_time, certificate)
        while True:
            certificate = min(self.certificates, key=lambda item: item.due or _now())
            wait = ((certificate.due or _now()) - _now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, 86400.0))  # wake daily at least: expiry warnings
                self._warn_if_expiring()
                continue
            await self._attempt(certificate)

    async def _attempt(self, certificate: ManagedCertificate) -> None:
        names = ", ".join(certificate.names)
        log.info("ACME: requesting a certificate for %s from %s", names, self.config.acme_directory_url)
        try:
            chain, key = await asyncio.to_thread(self._obtain_locked, certificate)
        except AcmeFailure as failure:
            delay = RETRY_DELAYS[min(certificate.failures, len(RETRY_DELAYS) - 1)]
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            certificate.failures += 1
            certificate.due = _now() + datetime.timedelta(seconds=delay)
            still = "" if certificate.paths.is_placeholder() else "; still serving the current certificate"
            log.error("ACME: certificate for %s failed: %s; next attempt in %gs%s", names, failure, delay, still)
            return
        certificate.paths.store(chain, key)
        certificate.failures = 0
        certificate.due = await asyncio.to_thread(self._renewal_time, certificate)
        not_after = certificate.paths.not_after()
        log.info("ACME: new certificate for %s, valid until %s; renewal due %s", names, not_after, certificate.due)
        self.on_new_certificate(f"ACME certificate for {names}")

    def _obtain_locked(self, certificate: ManagedCertificate) -> tuple[bytes, bytes]:
        paths = certificate.paths
        with platform.exclusive_file_lock(str(self.storage.lock_path)):
            current = paths.cert.read_bytes() if paths.exists() else None
            if current is not None and current != certificate.seen and not paths.is_placeholder():
                log.info("ACME: %s was renewed by another server sharing the folder", ", ".join(certificate.names))
                return current, paths.key.read_bytes()
            return self.issuer.obtain(certificate.names, self.config.acme_challenge_type)

    def _renewal_time(self, certificate: ManagedCertificate) -> datetime.datetime:
        paths = certificate.paths
        certificate.seen = paths.cert.read_bytes() if paths.exists() else None
        if paths.is_placeholder() or certificate.seen is None:
            return _now()
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(certificate.seen)
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        suggested = self.issuer.suggested_renewal(certificate.seen)
        if suggested is not None:
            return suggested
        lifetime = end - start
        # Jitter: up to 1/20 of the lifetime earlier, so many servers do not renew at once.
        jitter = lifetime * (random.random() / 20)
        return start + lifetime * RENEW_AT - jitter

    def _warn_if_expiring(self) -> None:
        # Only after a failed renewal: a certificate that renews on time (even one that
        # lives six days) is never worth a warning.
        for certificate in self.certificates:
            not_after = certificate.paths.not_after()
            if certificate.failures == 0 or not_after is None or certificate.paths.is_placeholder():
                continue
            if not_after - _now() < EXPIRY_WARNING:
                log.warning(
                    "ACME: the certificate for %s expires %s and has not been renewed yet",
                    ", ".join(certificate.names),
                    not_after,
                )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
