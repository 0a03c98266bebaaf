"""``asgigw [OPTIONS] APP``: command-line options -> Config -> Server. No protocol logic."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from gateway.config import Config, ConfigError, KiB, MiB
from gateway.loader import AppLoadError, load_app
from gateway.server import run

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


def _fail(message: str) -> None:
    click.echo(f"asgigw: error: {message}", err=True)
    sys.exit(2)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("app")
@click.option("--factory", is_flag=True, help="APP is a callable that returns the ASGI app.")
@click.option("--app-dir", default=".", show_default=True, help="Folder put first on sys.path to import APP.")
@click.option(
    "--bind", "-b", multiple=True, metavar="HOST:PORT", help="Address to listen on; repeatable. IPv6 as [::1]:8443."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Host to listen on (when no --bind).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (when no --bind).")
@click.option("--cert", "certfile", type=str, help="TLS certificate chain (PEM).")
@click.option("--key", "keyfile", type=str, help="TLS private key (PEM).")
@click.option(
    "--key-password", envvar="ASGIGW_KEY_PASSWORD", help="Password of an encrypted key (or $ASGIGW_KEY_PASSWORD)."
)
@click.option("--root-path", default="", help="Path prefix the app is mounted at behind a proxy (ASGI root_path).")
@click.option(
    "--lifespan",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="ASGI lifespan events.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True, help="Log level.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One log line per response.")
@click.option(
    "--keep-alive-timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--header-timeout", type=float, default=10.0, show_default=True, help="Seconds to receive a complete request head."
)
@click.option(
    "--tls-handshake-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to complete the TLS handshake.",
)
@click.option(
    "--graceful-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight requests get at shutdown.",
)
@click.option(
    "--max-header-size",
    type=int,
    default=16 * KiB,
    show_default=True,
    help="Largest request head in bytes (431 beyond).",
)
@click.option(
    "--max-body-size",
    type=int,
    default=100 * MiB,
    show_default=True,
    help="Largest request body in bytes (413 beyond); 0 = unlimited.",
)
@click.option("--backlog", type=int, default=2048, show_default=True, help="Listen backlog of pending connections.")
def main(app: str, factory: bool, app_dir: str, bind: tuple[str, ...], **options: Any) -> None:
    """Serve the ASGI application APP (module:attribute, e.g. proj.asgi:application)."""
    try:
        config = Config(bind=bind, **options)
    except ConfigError as exc:
        _fail(str(exc))
    try:
        application = load_app(app, factory=factory, app_dir=app_dir)
    except AppLoadError as exc:
        _fail(str(exc))
    except Exception as exc:  # the app's own module raised while importing: show where
        traceback.print_exc()
        _fail(f"error importing {app!r}: {type(exc).__name__}: {exc}")
    sys.exit(run(application, config))
