"""``python manage.py runserver`` served by asgigw: HTTPS, HTTP/2 and WebSocket in development.

Django's command keeps doing what it does well (parsing ``addrport``, system checks, the
migrations warning, the autoreloader's file watching); only the server changes: the
project's ASGI application runs on :class:`gateway.server.Server`, in the main thread, so
Ctrl+C and SIGTERM stop it gracefully (see :mod:`gateway.django.reloader` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string

from gateway import __version__, platform
from gateway.config import Config, ConfigError
from gateway.django import reloader
from gateway.listeners import StartupError
from gateway.logs import configure_logging
from gateway.server import Server

# A development server restarts on every save: requests in flight get a few seconds, not
# the 30 s a production deployment would give them; open WebSockets are closed with 1001.
DEV_GRACEFUL_TIMEOUT = 5.0
WILDCARD_HOSTS = {"0.0.0.0", "::"}


class Command(RunserverCommand):  # type: ignore[misc]  # Django ships no type stubs
    """Django's runserver with asgigw as the server (replaces staticfiles' runserver too)."""

    help = (
        "Starts a development server for the project's ASGI application with asgigw: HTTPS "
        "(a local development certificate unless --cert/--key or --no-tls), HTTP/2, WebSocket, "
        "and static files as Django's runserver serves them."
    )

    def add_arguments(self, parser: Any) -> None:
        """Django's options (addrport, --ipv6, --noreload, --nothreading), staticfiles', TLS.

        Same names and destinations as Django's, so its ``handle`` parses them; declared
        here so that their help says what they do under asgigw.
        """
        parser.add_argument("addrport", nargs="?", help="Port, or address:port (default 127.0.0.1:8000).")
        parser.add_argument(
            "--ipv6", "-6", action="store_true", dest="use_ipv6", help="Listen on ::1 when addrport has no address."
        )
        parser.add_argument(
            "--nothreading",
            action="store_false",
            dest="use_threading",
            help="Accepted for compatibility; no effect (asgigw serves on one asyncio loop).",
        )
        parser.add_argument(
            "--noreload", action="store_false", dest="use_reloader", help="Do not use the autoreloader."
        )
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do not serve static files at STATIC_URL (as with django.contrib.staticfiles' runserver).",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )
        parser.add_argument("--cert", dest="certfile", metavar="FILE", help="TLS certificate chain (PEM).")
        parser.add_argument("--key", dest="keyfile", metavar="FILE", help="TLS private key (PEM).")
        parser.add_argument(
            "--no-tls",
            action="store_true",
            dest="no_tls",
            help="Serve plain HTTP. Without it and without --cert: HTTPS with the local development certificate.",
        )
        parser.add_argument(
            "--loop",
            choices=("auto", "asyncio", "uvloop"),
            default="auto",
            help="Event loop, as asgigw's --loop: auto takes uvloop (winloop on Windows) when installed.",
        )
        parser.add_argument(
            "--http1-parser",
            choices=("auto", "h11", "httptools"),
            default="auto",
            dest="http1_parser",
            help="HTTP/1.1 parser, as asgigw's --http1-parser: auto takes httptools when installed.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Check the TLS options, then let Django parse addrport and call :meth:`run`."""
        if options["no_tls"] and (options["certfile"] or options["keyfile"]):
            raise CommandError("--no-tls and --cert/--key exclude each other")
        if bool(options["certfile"]) != bool(options["keyfile"]):
            raise CommandError("--cert and --key must be given together")
        self.protocol = "http" if options["no_tls"] else "https"
        super().handle(*args, **options)

    def run(self, **options: Any) -> None:
        """Serve, under the autoreloader unless --noreload."""
        if options["use_reloader"]:
            reloader.run_with_reloader(self.inner_run, **options)
        else:
            self.inner_run(None, **options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        """System checks and the migrations warning as Django does them, then serve."""
        # An error Django kept back while loading the project in the reloader's child.
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()
        config = self.get_config(options)
        application = self.get_application(options)
        try:
            self.serve(application, config)
        except KeyboardInterrupt:  # Ctrl+C in the moment before the server had its handlers
            pass
        if options.get("shutdown_message"):
            self.stdout.write(options["shutdown_message"])

    def get_config(self, options: dict[str, Any]) -> Config:
        """The asgigw configuration for the parsed address and the TLS options."""
        host = "0.0.0.0" if self.addr == "0" else self.addr
        # The development certificate covers loopback and this machine's name; a
        # specific address or name given on the command line is added to it.
        extra_names = () if host in WILDCARD_HOSTS else (host,)
        try:
            return Config(
                host=host,
                port=int(self.port),
                certfile=options["certfile"],
                keyfile=options["keyfile"],
                dev_tls=not options["no_tls"],
                dev_names=extra_names,
                graceful_timeout=DEV_GRACEFUL_TIMEOUT,
                loop=options["loop"],
                http1_parser=options["http1_parser"],
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from None

    def get_application(self, options: dict[str, Any]) -> Any:
        """settings.ASGI_APPLICATION (Channels' convention) or Django's ASGI handler.

        Static files are served the way Django's own runserver serves them: with DEBUG (or
        --insecure), unless --nostatic, when django.contrib.staticfiles is installed.
        """
        path = getattr(settings, "ASGI_APPLICATION", None)
        if path:
            application = import_string(path)
        else:
            from django.core.asgi import get_asgi_application

            application = get_asgi_application()
        serve_static = options["use_static_handler"] and (settings.DEBUG or options["insecure_serving"])
        if serve_static and apps.is_installed("django.contrib.staticfiles"):
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            application = ASGIStaticFilesHandler(application)
        return application

    def serve(self, application: Any, config: Config) -> None:
        """Run the server in this (the main) thread until a signal or a restart stops it."""
        configure_logging(config.log_level, config.access_log)
        try:
            loop = platform.new_event_loop(config.loop)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        server = Server(application, config)

        def stop() -> None:  # called from the file watcher thread
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(server.request_shutdown)

        restart = reloader.current
        try:
            with restart.stops(stop) if restart is not None else contextlib.nullcontext():
                code = loop.run_until_complete(self._serve_announced(server))
        except (ConfigError, StartupError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if code != 0:
            raise CommandError("the application failed to start (see the lifespan error above)")

    async def _serve_announced(self, server: Server) -> int:
        serving = asyncio.ensure_future(server.serve())
        started = asyncio.ensure_future(server.started.wait())
        await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            self.announce(server.addresses[0][1])
        else:
            started.cancel()
        return await serving

    def announce(self, port: int) -> None:
        """Django's start-up banner, with the URL asgigw really serves."""
        if self._raw_ipv6:
            host = f"[{self.addr}]"
        elif self.addr == "0":
            host = "0.0.0.0"
        else:
            host = self.addr
        now = datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI development server (asgigw {__version__}: HTTP/1.1, HTTP/2, WebSocket)"
            f" at {self.protocol}://{host}:{port}/\n"
            "Quit the server with CONTROL-C."
        )
        self.stdout.flush()
