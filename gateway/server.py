"""The running server: listeners, lifespan, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from typing import Any

from gateway import cert_reload, platform, tls
from gateway.config import Config, ConfigError
from gateway.connection import Connection
from gateway.context import ServerContext
from gateway.lifespan import Lifespan, LifespanFailure

log = logging.getLogger("gateway.error")


class StartupError(Exception):
    """The server cannot start (e.g. the port is taken); the message is one line."""


class Server:
    """One server process: binds ``config``'s addresses and serves ``app`` until stopped.

    ``started`` is set once every listener accepts; ``addresses`` then holds the bound
    ``(host, port)`` pairs (port 0 in the config becomes the real port).
    """

    def __init__(self, app: Any, config: Config) -> None:
        self.config = config
        self.context = ServerContext(config=config, app=app)
        self.started = asyncio.Event()
        self.addresses: list[tuple[str, int]] = []
        self._listeners: list[asyncio.Server] = []
        self._stop = asyncio.Event()
        self._forced = False
        self._stop_requests = 0
        self._lifespan: Lifespan | None = None

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
        loop = asyncio.get_running_loop()
        restore_signals = platform.install_signal_handlers(loop, self.request_shutdown) if handle_signals else None
        # Certificates are checked before the app starts, so a bad --key fails fast.
        self.config, dev_certificate = cert_reload.use_dev_certificate(self.config)
        self.context.config = self.config
        ssl_context = tls.create_server_context(self.config) if self.config.tls else None
        reloader: cert_reload.CertificateReloader | None = None
        restore_reload = None
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
            self._log_started()
            cert_reload.log_tls_startup(self.config, dev_certificate)
            reloader = cert_reload.start_reloader(ssl_context, self.config, dev_certificate)
            if reloader is not None and handle_signals:
                restore_reload = platform.install_reload_signal(loop, lambda: reloader.reload("SIGHUP"))
            self.started.set()
            await self._stop.wait()
            await self._shutdown()
            if not self._forced:
                await lifespan.shutdown()
            return 0
        finally:
            if restore_signals is not None:
                restore_signals()
            if restore_reload is not None:
                restore_reload()
            if reloader is not None:
                await reloader.stop()

    async def _bind(self, ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        context = self.context
        for address in config.addresses:
            try:
                listener = await loop.create_server(
                    lambda: Connection(context),
                    address.host,
                    address.port,
                    ssl=ssl_context,
                    backlog=config.backlog,
                    reuse_address=platform.reuse_address(),
                    ssl_handshake_timeout=config.tls_handshake_timeout if ssl_context else None,
                )
            except OSError as exc:
                for previous in self._listeners:
                    previous.close()
                reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
                raise StartupError(f"cannot listen on {address.url_host()}:{address.port}: {reason}") from None
            self._listeners.append(listener)
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                self.addresses.append((host, port))

    def _log_started(self) -> None:
        scheme = "https" if self.config.tls else "http"
        urls = ", ".join(f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}" for h, p in self.addresses)
        protocols = "HTTP/1.1, HTTP/2" if self.config.http2 else "HTTP/1.1"
        log.info("asgigw serving %s (%s%s); press Ctrl+C to stop", urls, protocols, ", TLS" if self.config.tls else "")

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
        for listener in self._listeners:
            try:
                await asyncio.wait_for(listener.wait_closed(), timeout=1)
            except (TimeoutError, OSError):
                pass


async def serve(app: Any, config: Config | None = None, *, handle_signals: bool = True, **options: Any) -> int:
    """Serve ``app`` until shutdown: ``await gateway.serve(app, port=8443, certfile=...)``."""
    if config is None:
        config = Config(**options)
    elif options:
        config = config.replace(**options)
    return await Server(app, config).serve(handle_signals=handle_signals)


def run(app: Any, config: Config | None = None, **options: Any) -> int:
    """Blocking: create an event loop, serve ``app`` until stopped, return the exit code."""
    from gateway.logs import configure_logging

    if config is None:
        config = Config(**options)
    elif options:
        config = config.replace(**options)
    configure_logging(config.log_level, config.access_log)
    loop = platform.new_event_loop()
    try:
        return loop.run_until_complete(serve(app, config))
    except (ConfigError, StartupError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        loop.close()
