"""Hot reload of TLS certificates: on SIGHUP (POSIX) and when the files change (everywhere).

Change detection polls ``os.stat`` every ``--cert-reload-interval`` seconds instead of using
inotify/kqueue/ReadDirectoryChangesW: it works the same on Linux, macOS and Windows, costs a
few system calls, and also notices files replaced by rename (certbot, Kubernetes secrets).
A new set of files that fails the checks in :mod:`gateway.tls` is logged and ignored; the
server keeps serving the certificates it had.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import ssl
from collections.abc import Callable

from gateway import devcerts
from gateway.config import Config
from gateway.tls import CertificateSet, TLSConfigError, startup_warnings

log = logging.getLogger("gateway.error")

# Seconds between noticing a changed file and reading it.
SETTLE_SECONDS = 0.25

FileSignature = tuple[tuple[int, int, int] | None, ...]


def file_signature(paths: list[str]) -> FileSignature:
    """What changes when a file is rewritten or replaced: inode, size, modification time."""
    signature: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            signature.append(None)
        else:
            signature.append((status.st_ino, status.st_size, status.st_mtime_ns))
    return tuple(signature)


class CertificateReloader:
    """Re-reads ``certificates`` when asked or when its files change; renews a dev cert.

    ``renew_dev_certificate`` (set when serving the development certificate) re-issues the
    leaf when it nears expiry, so a server left running for weeks never serves an expired one.
    """

    def __init__(
        self,
        certificates: CertificateSet,
        interval: float,
        renew_dev_certificate: Callable[[], devcerts.DevCertificate] | None = None,
    ) -> None:
        self.certificates = certificates
        self.interval = interval
        self._renew = renew_dev_certificate
        self._signature = file_signature(certificates.files())
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    def start(self) -> None:
        """Start polling (nothing to do when the interval is 0)."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if file_signature(self.certificates.files()) != self._signature:
                # A deploy that copies the certificate, then the key, is usually done a
                # moment later; reading at once would often see a mismatched pair.
                await asyncio.sleep(SETTLE_SECONDS)
            self.check()

    def check(self) -> None:
        """One poll: reload if any file changed, then renew the dev certificate if due."""
        if file_signature(self.certificates.files()) != self._signature:
            self.reload("certificate files changed")
        if self._renew_if_due():
            self.reload("development certificate renewed")

    def _renew_if_due(self) -> bool:
        not_after = self.certificates.default_not_after
        if self._renew is None or not_after is None:
            return False
        if not_after - datetime.datetime.now(datetime.UTC) > devcerts.RENEW_BEFORE:
            return False
        try:
            certificate = self._renew()
        except devcerts.DevCertError as exc:
            log.error("cannot renew the development certificate: %s", exc)
            return False
        if certificate.renewed:
            log.info(
                "renewed the development certificate %s (expires %s)", certificate.cert_path, certificate.not_after
            )
        return certificate.renewed

    def reload(self, reason: str) -> bool:
        """Re-read the files now; True when the new certificates are in use."""
        # Remember what was tried, so a broken file is reported once, not at every poll.
        self._signature = file_signature(self.certificates.files())
        try:
            self.certificates.reload()
        except TLSConfigError as exc:
            log.error("TLS reload (%s) failed, still serving the previous certificates: %s", reason, exc)
            return False
        self.reloads += 1
        log.info("TLS certificates reloaded (%s); new connections use them", reason)
        return True


def use_dev_certificate(config: Config) -> tuple[Config, devcerts.DevCertificate | None]:
    """When ``config`` asks for the development certificate, issue/renew it and point at it."""
    if not config.dev_tls or config.certfile is not None:
        return config, None
    try:
        certificate = devcerts.ensure_dev_certificate(devcerts.ca_folder(config.ca_dir), config.dev_names)
    except devcerts.DevCertError as exc:
        raise TLSConfigError(f"{exc} (or serve plain HTTP with --no-tls)") from None
    return config.replace(certfile=str(certificate.cert_path), keyfile=str(certificate.key_path)), certificate


def log_tls_startup(config: Config, certificate: devcerts.DevCertificate | None) -> None:
    """The start-up lines about TLS: which certificate, how to trust it, what looks wrong."""
    if certificate is not None:
        trusted = devcerts.system_trusts(certificate.ca_path)
        log.info(
            "TLS: development certificate %s for %s (expires %s UTC), issued by the local CA %s; %s",
            certificate.cert_path,
            ", ".join(certificate.names),
            f"{certificate.not_after:%Y-%m-%d}",
            certificate.ca_path,
            "the system trusts it" if trusted else "run 'asgigw certs trust' once so browsers and curl trust it",
        )
        outside = [address for address in config.addresses if not address.is_loopback()]
        if outside:
            log.warning(
                "listening on %s with a development certificate: other machines do not trust the local CA;"
                " use --cert/--key for anything but local development",
                ", ".join(f"{address.url_host()}:{address.port}" for address in outside),
            )
        return
    if config.certfile is not None:
        log.info("TLS: certificate %s, key %s", config.certfile, config.keyfile)
        for warning in startup_warnings(config):
            log.warning("%s", warning)


def start_reloader(
    ssl_context: ssl.SSLContext | None, config: Config, certificate: devcerts.DevCertificate | None
) -> CertificateReloader | None:
    """Start watching the files behind ``ssl_context`` (None for plain HTTP)."""
    certificates = getattr(ssl_context, "certificates", None)
    if not isinstance(certificates, CertificateSet):
        return None
    renew = None
    if certificate is not None:
        folder = devcerts.ca_folder(config.ca_dir)

        def renew() -> devcerts.DevCertificate:
            return devcerts.ensure_dev_certificate(folder, config.dev_names)

    reloader = CertificateReloader(
        certificates,
        config.cert_reload_interval,
        renew_dev_certificate=renew,
    )
    reloader.start()
    return reloader
