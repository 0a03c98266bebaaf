"""The serving options of ``asgigw``: every one maps to a ``Config`` field (docs/options.md).

They are kept apart from ``cli.py`` (which handles the command itself: subcommands, config
files and the environment, one-line errors) so each stays readable; the order here is the
order ``asgigw --help`` lists them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from gateway.cli_edge_options import EDGE_OPTIONS
from gateway.config import KiB, MiB

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]

Command = TypeVar("Command", bound=Callable[..., Any])


def octal_mode(value: str | None) -> int | None:
    """``--uds-mode 660`` as the integer 0o660."""
    if value is None:
        return None
    try:
        return int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal file mode such as 660") from None


SERVE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--factory", is_flag=True, help="APP is a callable that returns the ASGI app."),
    click.option("--app-dir", default=".", show_default=True, help="Folder put first on sys.path to import APP."),
    click.option(
        "--bind", "-b", multiple=True, metavar="HOST:PORT", help="Address to listen on; repeatable. IPv6 as [::1]:8443."
    ),
    click.option(
        "--uds",
        multiple=True,
        metavar="PATH",
        help="Listen on a Unix domain socket (POSIX; replaces --host/--port unless --bind); repeatable.",
    ),
    click.option(
        "--uds-mode",
        metavar="OCTAL",
        callback=lambda ctx, param, value: octal_mode(value),
        help="File mode of the --uds socket, e.g. 660 (default: from the umask).",
    ),
    click.option(
        "--fd",
        "fds",
        multiple=True,
        type=int,
        metavar="N",
        help="Serve an inherited listening socket (replaces --host/--port unless --bind); repeatable.",
    ),
    click.option(
        "--systemd-sockets/--no-systemd-sockets",
        default=True,
        show_default=True,
        help="Serve the sockets of systemd socket activation (LISTEN_FDS) when they are meant for this process.",
    ),
    click.option("--host", default="127.0.0.1", show_default=True, help="Host to listen on (when no --bind)."),
    click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (when no --bind)."),
    click.option("--cert", "certfile", type=str, help="TLS certificate chain (PEM)."),
    click.option("--key", "keyfile", type=str, help="TLS private key (PEM)."),
    click.option(
        "--key-password", envvar="ASGIGW_KEY_PASSWORD", help="Password of an encrypted key (or $ASGIGW_KEY_PASSWORD)."
    ),
    click.option(
        "--no-tls", is_flag=True, help="Serve plain HTTP. Without it and without --cert: HTTPS with a dev certificate."
    ),
    click.option("--ca-dir", envvar="ASGIGW_CA_DIR", help="Folder of the local dev CA (or $ASGIGW_CA_DIR)."),
    click.option(
        "--dev-name", "dev_names", multiple=True, metavar="NAME", help="Extra name for the dev certificate; repeatable."
    ),
    click.option("--allow-expired", is_flag=True, help="Serve a --cert that has expired instead of refusing to start."),
    click.option(
        "--tls-min-version",
        type=click.Choice(["1.2", "1.3"]),
        default="1.2",
        show_default=True,
        help="Oldest TLS version.",
    ),
    click.option(
        "--ciphers", metavar="OPENSSL-LIST", help="TLS 1.2 cipher suites (OpenSSL list); TLS 1.3 keeps its own."
    ),
    click.option(
        "--sni-cert",
        "sni_certs",
        multiple=True,
        metavar="HOST=CERT,KEY",
        help="Certificate for clients asking for HOST (SNI; *.example.com allowed); repeatable.",
    ),
    click.option("--ca-certs", metavar="FILE", help="CA bundle (PEM) that client certificates must chain to (mTLS)."),
    click.option(
        "--client-cert",
        type=click.Choice(["none", "optional", "required"]),
        default="none",
        show_default=True,
        help="Ask clients for a certificate (needs --ca-certs).",
    ),
    click.option(
        "--cert-reload-interval",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds between checks for changed certificate files; 0 = off (SIGHUP still reloads).",
    ),
    click.option(
        "--static",
        multiple=True,
        metavar="URL_PREFIX=DIR",
        help="Serve files in DIR under URL_PREFIX (e.g. /static/=staticfiles) without calling the app; repeatable.",
    ),
    click.option(
        "--static-max-age",
        type=int,
        default=3600,
        show_default=True,
        help="Cache-Control max-age of --static files in seconds; 0 = no-cache.",
    ),
    click.option("--root-path", default="", help="Path prefix the app is mounted at behind a proxy (ASGI root_path)."),
    click.option(
        "--lifespan",
        type=click.Choice(["auto", "on", "off"]),
        default="auto",
        show_default=True,
        help="ASGI lifespan events.",
    ),
    click.option(
        "--interface",
        type=click.Choice(["auto", "asgi3", "asgi2"]),
        default="auto",
        show_default=True,
        help="How APP is called: asgi3 app(scope, receive, send), asgi2 app(scope)(receive, send), or auto-detect.",
    ),
    click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True, help="Log level."),
    click.option("--access-log/--no-access-log", default=True, show_default=True, help="One log line per response."),
    click.option(
        "--access-log-file",
        metavar="FILE",
        help="Append access-log lines to FILE instead of stderr; reopened on SIGUSR1 (POSIX) for logrotate.",
    ),
    click.option(
        "--access-log-format",
        default="default",
        show_default=True,
        metavar="FORMAT",
        help="Access-log line: default, common, combined, json, or a template such as "
        "'{client} {method} {path} {status}' (fields: docs/logging.md).",
    ),
    click.option(
        "--log-config",
        metavar="FILE",
        help="logging.config.dictConfig file (.json, .toml, or .yaml with PyYAML) for gateway.error and gateway.access.",
    ),
    click.option(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds an idle keep-alive connection stays open.",
    ),
    click.option(
        "--header-timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Seconds to receive a complete request head.",
    ),
    click.option(
        "--tls-handshake-timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Seconds to complete the TLS handshake.",
    ),
    click.option(
        "--graceful-timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds in-flight requests get at shutdown.",
    ),
    click.option(
        "--body-timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds a client may pause while sending a request body.",
    ),
    click.option(
        "--send-timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds a client may leave our data unread before it is dropped.",
    ),
    click.option(
        "--max-header-size",
        type=int,
        default=16 * KiB,
        show_default=True,
        help="Largest request head in bytes (431 beyond).",
    ),
    click.option(
        "--max-body-size",
        type=int,
        default=100 * MiB,
        show_default=True,
        help="Largest request body in bytes (413 beyond); 0 = unlimited.",
    ),
    click.option("--backlog", type=int, default=2048, show_default=True, help="Listen backlog of pending connections."),
    click.option(
        "--workers",
        type=int,
        default=1,
        show_default=True,
        help="Worker processes sharing the listeners (about one per CPU core); 1 serves in this process.",
    ),
    click.option(
        "--max-requests",
        type=int,
        default=0,
        show_default=True,
        help="Replace a worker after it served this many requests (new one first, then the old drains); 0 = never.",
    ),
    click.option(
        "--max-requests-jitter",
        type=int,
        default=0,
        show_default=True,
        help="Add a random 0..N to each worker's --max-requests, so workers are not replaced all at once.",
    ),
    click.option(
        "--reload",
        is_flag=True,
        help="Restart the workers when a watched file changes (new ones first; the old drain). For development.",
    ),
    click.option(
        "--reload-dir",
        "reload_dirs",
        multiple=True,
        metavar="DIR",
        help="Folder to watch with --reload (default: --app-dir); repeatable.",
    ),
    click.option(
        "--reload-include",
        "reload_includes",
        multiple=True,
        metavar="GLOB",
        help="File names that trigger --reload (default *.py); repeatable.",
    ),
    click.option(
        "--reload-exclude",
        "reload_excludes",
        multiple=True,
        metavar="GLOB",
        help="File or folder names --reload ignores (default: .*, __pycache__, *.pyc, venv folders); repeatable.",
    ),
    click.option(
        "--ws-per-message-deflate/--no-ws-per-message-deflate",
        default=True,
        show_default=True,
        help="Accept WebSocket permessage-deflate compression when a client offers it.",
    ),
    click.option(
        "--ws-max-message-size",
        type=int,
        default=16 * MiB,
        show_default=True,
        help="Largest WebSocket message in bytes, after decompression (close 1009 beyond); 0 = unlimited.",
    ),
    click.option(
        "--ws-ping-interval",
        type=float,
        default=20.0,
        show_default=True,
        help="Seconds between WebSocket pings; 0 = off.",
    ),
    click.option(
        "--ws-ping-timeout",
        type=float,
        default=20.0,
        show_default=True,
        help="Seconds to wait for a pong before closing the WebSocket.",
    ),
    click.option(
        "--ws-close-timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Seconds to wait for the client's close frame after the server's (and for the app's last replies after the client's).",
    ),
    click.option(
        "--loop",
        type=click.Choice(["auto", "asyncio", "uvloop"]),
        default="auto",
        show_default=True,
        help="Event loop; uvloop is winloop on Windows. auto: uvloop if installed (asgigw[fast]), else asyncio.",
    ),
    click.option(
        "--http1-parser",
        type=click.Choice(["auto", "h11", "httptools"]),
        default="auto",
        show_default=True,
        help="HTTP/1.1 request parser. auto: httptools if installed (asgigw[fast]), else h11.",
    ),
    click.option(
        "--http2/--no-http2",
        default=True,
        show_default=True,
        help="Serve HTTP/2: ALPN h2 on TLS, prior knowledge and Upgrade: h2c on plain HTTP.",
    ),
    click.option(
        "--h2-max-concurrent-streams",
        type=int,
        default=100,
        show_default=True,
        help="HTTP/2 streams open at once per connection; more get REFUSED_STREAM.",
    ),
    click.option(
        "--h2-max-header-list-size",
        type=int,
        default=64 * KiB,
        show_default=True,
        help="Largest HTTP/2 header block in bytes, compressed and decoded.",
    ),
    click.option(
        "--h2-initial-window-size",
        type=int,
        default=64 * KiB,
        show_default=True,
        help="HTTP/2 request-body bytes buffered per stream before the app reads them.",
    ),
    click.option(
        "--h2-max-frame-size", type=int, default=16 * KiB, show_default=True, help="Largest HTTP/2 frame we accept."
    ),
    click.option(
        "--h2-send-timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds a response waits for the HTTP/2 peer's window or reading before it is dropped.",
    ),
    click.option(
        "--h2-max-resets",
        type=int,
        default=200,
        show_default=True,
        help="Stream resets per HTTP/2 connection per 10 s before GOAWAY ENHANCE_YOUR_CALM.",
    ),
    click.option(
        "--h2-max-control-frames",
        type=int,
        default=1000,
        show_default=True,
        help="PING/SETTINGS/WINDOW_UPDATE/PRIORITY/empty DATA frames per 10 s (plus 2 per DATA frame sent, 1 per request).",
    ),
]


def serve_options(command: Command) -> Command:
    """Add every serving option to ``command``: the server's, then the edge features'."""
    decorated: Callable[..., Any] = command
    for option in reversed([*SERVE_OPTIONS, *EDGE_OPTIONS]):
        decorated = option(decorated)
    return cast(Command, decorated)
