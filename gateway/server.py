"""The running server: listeners, lifespan, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from gateway import platform
from gateway.accelerators import http1_parser_in_use
from gateway.access_log import reopen_logs
from gateway.config import Config, ConfigError, ListenerSpec
from gateway.context import ServerContext
from gateway.interface import as_asgi3
from gateway.lifespan import Lifespan, LifespanFailure
from gateway.limits.listener import GatedListener
from gateway.listener_protocols import ListenerProtocols
from gateway.listeners import ListeningSocket, StartupError, bind_sockets, describe, remove_unix_sockets

if TYPE_CHECKING:
    from gateway.acme.manager import CertificateManager
    from gateway.cert_reload import CertificateReloader
    from gateway.devcerts import DevCertificate
    from gateway.metrics_export import ServedMetrics

log = logging.getLogger("gateway.error")


class Listener(Protocol):
    """What shutdown needs of a listener: an ``asyncio.Server``, ``platform.SharedSocketAcceptor``
    or ``limits.listener.GatedListener``."""

    def close(self) -> None:
        """Stop accepting new connections."""

    async def wait_closed(self) -> None:
        """Wait until the listening socket is closed."""


class Server:
    """One server process: binds ``config``'s addresses and serves ``app`` until stopped.

    ``started`` is set once every listener accepts; ``addresses`` then holds the bound
    ``(host, port)`` pairs (port 0 in the config becomes the real port).

    ``sockets``, when given, are listening sockets bound elsewhere (by the workers'
    supervisor, see gateway/workers.py), each with the listener it serves: the server
    accepts on them instead of binding ``config.listeners`` itself. ``announce=False`` leaves the start-up lines (the URLs and
    the TLS certificate) to whoever bound the sockets, so N workers do not print them N times.
    ``accept_in_thread`` accepts on those sockets from a thread instead, as Windows workers
    must (``platform.accept_shared_in_thread`` says why).
    """

    def __init__(
        self,
        app: Any,
        config: Config,
        *,
        sockets: Sequence[ListeningSocket] = (),
        announce: bool = True,
        accept_in_thread: bool = False,
        supervised: bool = False,
    ) -> None:
        self.config = config
        # Here, not in the loader: embedders and gateway.serve() hand over app objects too.
        self.context = ServerContext(config=config, app=as_asgi3(app, config.interface))
        self.started = asyncio.Event()
        self.addresses: list[tuple[str, int]] = []
        # The --redirect-http listeners' bound addresses (not in ``addresses``).
        self.redirect_addresses: list[tuple[str, int]] = []
        # Listeners on Unix sockets or inherited descriptors, as log lines name them.
        self.other_listeners: list[str] = []
        # Sockets this Server bound itself (not handed over by a supervisor).
        self._own_sockets: list[ListeningSocket] = []
        self._sockets = list(sockets)
        self._announce = announce
        self._accept_in_thread = accept_in_thread
        self._listeners: list[Listener] = []
        self._stop = asyncio.Event()
        self._forced = False
        self._stop_requests = 0
        self._lifespan: Lifespan | None = None
        self._reloader: CertificateReloader | None = None
        self._metrics: ServedMetrics | None = None
        # True in workers: their supervisor talks to the ACME CA and serves the metrics of
        # all of them (gateway/workers.py).
        self._supervised = supervised

    @property
    def shutdown_requested(self) -> bool:
        """True once a stop was requested (by a signal, the supervisor or the embedder)."""
        return self._stop_requests > 0

    @property
    def forced(self) -> bool:
        """True once a second stop request ended the graceful shutdown."""
        return self._forced

    def reload_certificates(self, reason: str) -> bool:
        """Re-read the TLS certificate files now (as SIGHUP does); False without TLS or on failure."""
        return self._reloader is not None and self._reloader.reload(reason)

    def request_shutdown(self, signum: int | None = None) -> None:
        """Begin a graceful shutdown; a second request stops at once."""
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info("shutting down (waiting up to %gs for requests in flight)", self.config.graceful_timeout)
        else:
            log.warning("second stop request: exiting now")
            self._forced = True
            for connection in list(self.context.connections):
                connection.cancel()
            if self._lifespan is not None:  # an app hanging in lifespan.shutdown
                self._lifespan.cancel()
        self._stop.set()

    async def serve(self, *, handle_signals: bool = True) -> int:
        """Run until shutdown; return the process exit code (0 clean, 1 startup failure)."""
        loop = self.context.loop = asyncio.get_running_loop()
        restore_signals = platform.install_signal_handlers(loop, self.request_shutdown) if handle_signals else None
        # Certificates are checked before the app starts, so a bad --key fails fast.
        self.config, ssl_context, dev_certificate = prepare_tls(self.config)
        self.context.config = self.config
        reloader: CertificateReloader | None = None
        certificates: CertificateManager | None = None
        metrics: ServedMetrics | None = None
        restore_reload = restore_reopen = None
        lifespan = self._lifespan = Lifespan(self.context.app, self.config.lifespan)
        try:
            try:
                await lifespan.startup()
            except LifespanFailure as exc:
                log.error("%s", exc)
                return 1
            self.context.state = lifespan.state
            if self._stop.is_set():  # asked to stop while the app was starting: do not listen
                await lifespan.shutdown()
                return 0
            try:
                await self._bind(ssl_context)
            except BaseException:
                await lifespan.shutdown()
                raise
            if self._announce:
                log_serving(self.config, self._sockets)
                log_tls_startup(self.config, dev_certificate)
            reloader = self._reloader = _start_reloader(ssl_context, self.config, dev_certificate)
            if reloader is not None and handle_signals:
                restore_reload = platform.install_reload_signal(loop, lambda: reloader.reload("SIGHUP"))
            if not self._supervised:
                certificates = start_certificate_manager(self.config, self.reload_certificates)
            metrics = self._metrics = start_metrics(self.context, self.config, endpoint=not self._supervised)
            if handle_signals:
                restore_reopen = platform.install_reopen_signal(loop, lambda: reopen_logs("SIGUSR1"))
            self.started.set()
            await self._stop.wait()
            await self._shutdown()
            if not self._forced:
                await lifespan.shutdown()
            return 0
        finally:
            remove_unix_sockets(self._own_sockets)
            if metrics is not None:
                metrics.stop()
            if certificates is not None:
                await certificates.stop()
            if restore_signals is not None:
                restore_signals()
            if restore_reload is not None:
                restore_reload()
            if restore_reopen is not None:
                restore_reopen()
            if reloader is not None:
                self._reloader = None
                await reloader.stop()

    def _bound(self, spec: ListenerSpec, sock: socket.socket, protocols: ListenerProtocols) -> None:
        name = sock.getsockname()
        if not isinstance(name, tuple):  # a Unix socket: no host and port to redirect to
            self.other_listeners.append(describe(sock))
            return
        host, port = name[:2]
        if spec.redirect:
            self.redirect_addresses.append((host, port))
            return
        self.addresses.append((host, port))
        if not protocols.https_port:
            protocols.set_https_port(port)

    async def _bind(self, ssl_context: ssl.SSLContext | None) -> None:
        # TLS starts inside each connection (gateway/pre_tls.py), so no listener gets ssl=.
        protocols = ListenerProtocols(self.context, ssl_context)
        if not self._sockets:
            # One process: bind here, as the workers' supervisor does (gateway/listeners.py),
            # and remove the --uds files again at the end.
            self._sockets = self._own_sockets = bind_sockets(self.config)
        await self._accept_on(self._sockets, protocols)

    async def _accept_on(self, sockets: list[ListeningSocket], protocols: ListenerProtocols) -> None:
        """Serve sockets that are already bound and listening (handed over by the supervisor)."""
        loop = asyncio.get_running_loop()
        limits = self.context.connection_limits
        gate = limits.gate if limits is not None else None
        for sock, spec in sockets:
            listener: Listener
            if self._accept_in_thread:
                listener = platform.SharedSocketAcceptor(
                    loop, sock, protocols.factory(spec), ssl_context=None, ssl_handshake_timeout=None, gate=gate
                )
            elif gate is not None:
                listener = GatedListener(
                    loop, sock, protocols.factory(spec), gate=gate, ssl_context=None, ssl_handshake_timeout=None
                )
            else:
                listener = await loop.create_server(protocols.factory(spec), sock=sock, backlog=self.config.backlog)
            self._listeners.append(listener)
            self._bound(spec, sock, protocols)

    async def _shutdown(self) -> None:
        context = self.context
        context.shutting_down = True
        for listener in self._listeners:
            listener.close()
        for connection in list(context.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.config.graceful_timeout
        while (context.connections or context.tasks) and time.monotonic() < deadline and not self._forced:
            await asyncio.sleep(0.05)
        for connection in list(context.connections):
            connection.cancel()
        for task in list(context.tasks):
            task.cancel()
        if context.tasks:
            await asyncio.wait(list(context.tasks), timeout=1)
        # Let cancelled app tasks and closing transports run their last callbacks.
        await asyncio.sleep(0)
        for limits in (context.request_limits, context.connection_limits):
            if limits is not None:
                limits.close()  # the last "N more refused" log line
        for listener in self._listeners:
            try:
                await asyncio.wait_for(listener.wait_closed(), timeout=1)
            except (TimeoutError, OSError):
                pass


# The TLS modules are imported by the three functions below, only when there is TLS to
# serve: gateway.tls, gateway.cert_reload and gateway.devcerts load cryptography, about
# 10 MB of memory per process (each worker too), which a plain-HTTP server never uses.


def prepare_tls(config: Config) -> tuple[Config, ssl.SSLContext | None, DevCertificate | None]:
    """Issue the development certificate if ``config`` asks for it, then check and load the
    certificates: ``(config pointing at them, listener context, dev certificate)``.

    Plain HTTP returns ``(config, None, None)`` without importing anything.
    """
    if not config.tls:
        return config, None, None
    from gateway import cert_reload, tls

    if config.acme_domains:
        config = _acme_manager().prepare(config)
    config, dev_certificate = cert_reload.use_dev_certificate(config)
    return config, tls.create_server_context(config), dev_certificate


def start_metrics(context: ServerContext, config: Config, *, endpoint: bool) -> ServedMetrics | None:
    """Count into ``context.metrics`` and export them (None without --metrics-bind).

    ``endpoint=False`` in a worker: its values go to the supervisor's multi-process folder
    and the supervisor serves them.
    """
    if config.metrics_bind is None:
        return None
    from gateway import metrics_export
    from gateway.metrics import Metrics
    from gateway.protocols.http2 import HTTP2Protocol

    def open_connections() -> dict[str, int]:
        http2 = sum(isinstance(connection.protocol, HTTP2Protocol) for connection in context.connections)
        return {"h2": http2, "http/1.1": len(context.connections) - http2}

    def limit_refusals() -> dict[str, int]:
        counts: dict[str, int] = {}
        for limits in (context.request_limits, context.connection_limits):
            if limits is not None:
                counts.update(limits.refusals())
        return counts

    metrics = context.metrics = Metrics()
    try:
        return metrics_export.ServedMetrics(metrics, config, open_connections, limit_refusals, endpoint=endpoint)
    except metrics_export.MetricsUnavailable as exc:
        raise StartupError(str(exc)) from None


def _acme_manager() -> ModuleType:
    # The acme extra (acme, josepy, requests) is loaded only with --acme-domain.
    try:
        from gateway.acme import manager
    except ImportError as exc:
        raise ConfigError(f"--acme-domain needs the acme extra: pip install 'asgigw[acme]' ({exc})") from None
    return manager


def start_certificate_manager(config: Config, reload: Callable[[str], object]) -> CertificateManager | None:
    """Obtain and renew --acme-domain certificates in the background (None without ACME)."""
    if not config.acme_domains:
        return None
    manager: CertificateManager = _acme_manager().CertificateManager(config, reload)
    manager.start()
    return manager


def log_tls_startup(config: Config, dev_certificate: DevCertificate | None) -> None:
    """The start-up lines about the certificate served (none for plain HTTP)."""
    if config.tls:
        from gateway import cert_reload

        cert_reload.log_tls_startup(config, dev_certificate)


def _start_reloader(
    ssl_context: ssl.SSLContext | None, config: Config, dev_certificate: DevCertificate | None
) -> CertificateReloader | None:
    if ssl_context is None:
        return None
    from gateway import cert_reload

    return cert_reload.start_reloader(ssl_context, config, dev_certificate)


def log_serving(config: Config, sockets: Sequence[ListeningSocket], workers: int = 1) -> None:
    """The start-up line operators (and tests) look for: every URL and what it speaks."""
    scheme = "https" if config.tls else "http"
    urls = ", ".join(_url(scheme, sock) for sock, spec in sockets if not spec.redirect)
    features = ["HTTP/1.1, HTTP/2" if config.http2 else "HTTP/1.1"]
    # Which accelerators (the fast extra) this server runs on: operators should not guess.
    features.append(f"{platform.describe_loop(asyncio.get_running_loop())} loop")
    features.append(f"{http1_parser_in_use(config.http1_parser)} parser")
    if config.tls:
        features.append("TLS")
    if any(spec.proxy_protocol for _, spec in sockets):
        features.append("PROXY protocol" if config.proxy_protocol else "PROXY protocol on some listeners")
    if workers > 1:
        features.append(f"{workers} worker processes")
    log.info("asgigw serving %s (%s); press Ctrl+C to stop", urls, ", ".join(features))
    redirects = [_url("http", sock) for sock, spec in sockets if spec.redirect]
    if redirects:
        log.info("redirecting %s to https (308)", ", ".join(redirects))


def _url(scheme: str, sock: socket.socket) -> str:
    # A Unix socket has no URL of its own: "https on unix:/run/asgigw.sock".
    where = describe(sock)
    return f"{scheme} on {where}" if where.startswith("unix:") else f"{scheme}://{where}"
