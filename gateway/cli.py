"""``asgigw [OPTIONS] APP``: command-line options -> Config -> Server. No protocol logic."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import click

from gateway.config import Config, ConfigError, KiB, MiB
from gateway.config_sources import (
    ENV_PREFIX,
    ConfigFile,
    ConfigSourceError,
    apply_env_file,
    env_name,
    find_pyproject_table,
    read_config_file,
    read_env_file,
)
from gateway.effective_config import render_effective_config
from gateway.loader import AppLoadError, load_app, split_target
from gateway.response_options import DEFAULT_COMPRESS_TYPES
from gateway.server import run
from gateway.version_info import version_text

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


def _fail(message: str) -> NoReturn:
    click.echo(f"asgigw: error: {message}", err=True)
    sys.exit(2)


# ctx.meta keys: what --config and --env-file loaded, for APP and --print-config.
CONFIG_FILE = "asgigw.config_file"
ENV_FILE_NAMES = "asgigw.env_file_names"


class MainCommand(click.Command):
    """``asgigw [OPTIONS] APP`` serves; ``asgigw certs ...`` goes to the certs commands.

    Serving stays the main form, so its options are what ``asgigw --help`` lists; a first
    argument naming a subcommand (never a valid ``module:attr``) routes there instead.
    """

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        """Dispatch to a subcommand when the first argument names one; errors are one line."""
        arguments = list(sys.argv[1:] if args is None else args)
        if arguments and arguments[0] in SUBCOMMANDS:
            name = f"{prog_name or 'asgigw'} {arguments[0]}"
            return SUBCOMMANDS[arguments[0]]().main(arguments[1:], prog_name=name, **extra)
        env_file_names = _load_env_file(arguments)
        extra.setdefault("obj", {ENV_FILE_NAMES: env_file_names})
        try:
            return super().main(arguments, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message(), err=True)
            sys.exit(2)
        except click.BadParameter as exc:
            _fail(f"{exc.format_message()}{_from_environment(exc)}")
        except click.ClickException as exc:
            # Every start-up error has one form (docs/options.md): one line, exit 2.
            _fail(f"{exc.format_message()} (asgigw --help lists the options)")
        except click.Abort:
            sys.exit(1)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands after the options."""
        super().format_epilog(ctx, formatter)
        with formatter.section("Commands (asgigw COMMAND --help)"):
            formatter.write_dl([(name, load().get_short_help_str()) for name, load in SUBCOMMANDS.items()])


def _certs_command() -> click.Command:
    # Imported when used: the certs commands load cryptography, which serving does not
    # need until there is TLS (gateway.server.prepare_tls).
    from gateway.certs_cli import certs

    return certs


SUBCOMMANDS: dict[str, Callable[[], click.Command]] = {"certs": _certs_command}


def _load_env_file(arguments: list[str]) -> set[str]:
    """Apply ``--env-file FILE`` (or ``$ASGIGW_ENV_FILE``) before click reads the environment.

    Click reads ``ASGIGW_*`` variables while it parses, so the file must be in the
    environment first; the option itself is declared below for --help and validation.
    """
    path = os.environ.get(f"{ENV_PREFIX}_ENV_FILE")
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        if argument == "--env-file" and index + 1 < len(arguments):
            path = arguments[index + 1]
        elif argument.startswith("--env-file="):
            path = argument.partition("=")[2]
    if not path:
        return set()
    try:
        return apply_env_file(read_env_file(path))
    except ConfigSourceError as exc:
        _fail(str(exc))


def _from_environment(exc: click.BadParameter) -> str:
    """`` (from $ASGIGW_PORT)`` when the bad value came from a variable, not the command line."""
    if exc.ctx is None or exc.param is None or exc.param.name is None:
        return ""
    if exc.ctx.get_parameter_source(exc.param.name) is not click.core.ParameterSource.ENVIRONMENT:
        return ""
    return f" (from ${exc.param.envvar if isinstance(exc.param.envvar, str) else env_name(exc.param)})"


def _read_config(ctx: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """Eager: fill click's default_map from --config FILE, or [tool.asgigw] in ./pyproject.toml."""
    if ctx.resilient_parsing:
        return value
    assert ctx.command is not None
    try:
        source = read_config_file(value, ctx.command) if value else find_pyproject_table(ctx.command)
    except ConfigSourceError as exc:
        _fail(str(exc))
    if source is not None:
        ctx.default_map = {**source.values, **({"app": source.app} if source.app else {})}
        ctx.meta[CONFIG_FILE] = source
    return value


def _show_version(ctx: click.Context, parameter: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit(0)


@click.command(
    cls=MainCommand,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "auto_envvar_prefix": ENV_PREFIX,
    },
)
@click.argument("app", required=False, metavar="APP", envvar=f"{ENV_PREFIX}_APP")
@click.option(
    "--config",
    metavar="FILE",
    is_eager=True,
    callback=_read_config,
    help="TOML file of options (keys are long option names); default: [tool.asgigw] in ./pyproject.toml.",
)
@click.option(
    "--env-file",
    metavar="FILE",
    help="NAME=VALUE lines put into the environment first (ASGIGW_<OPTION> variables set options).",
)
@click.option(
    "--print-config",
    is_flag=True,
    allow_from_autoenv=False,
    help="Print the effective options and where each came from (secrets masked), then exit.",
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    allow_from_autoenv=False,
    callback=_show_version,
    help="Print the versions of asgigw, Python and the protocol libraries, and the fast paths found.",
)
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
@click.option(
    "--no-tls", is_flag=True, help="Serve plain HTTP. Without it and without --cert: HTTPS with a dev certificate."
)
@click.option("--ca-dir", envvar="ASGIGW_CA_DIR", help="Folder of the local dev CA (or $ASGIGW_CA_DIR).")
@click.option(
    "--dev-name", "dev_names", multiple=True, metavar="NAME", help="Extra name for the dev certificate; repeatable."
)
@click.option("--allow-expired", is_flag=True, help="Serve a --cert that has expired instead of refusing to start.")
@click.option(
    "--tls-min-version", type=click.Choice(["1.2", "1.3"]), default="1.2", show_default=True, help="Oldest TLS version."
)
@click.option("--ciphers", metavar="OPENSSL-LIST", help="TLS 1.2 cipher suites (OpenSSL list); TLS 1.3 keeps its own.")
@click.option(
    "--sni-cert",
    "sni_certs",
    multiple=True,
    metavar="HOST=CERT,KEY",
    help="Certificate for clients asking for HOST (SNI; *.example.com allowed); repeatable.",
)
@click.option("--ca-certs", metavar="FILE", help="CA bundle (PEM) that client certificates must chain to (mTLS).")
@click.option(
    "--client-cert",
    type=click.Choice(["none", "optional", "required"]),
    default="none",
    show_default=True,
    help="Ask clients for a certificate (needs --ca-certs).",
)
@click.option(
    "--cert-reload-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between checks for changed certificate files; 0 = off (SIGHUP still reloads).",
)
@click.option(
    "--acme-domain",
    "acme_domains",
    multiple=True,
    metavar="NAME[,NAME...]",
    help="Get a certificate for NAME from an ACME CA (Let's Encrypt by default); commas make one SAN set; repeatable.",
)
@click.option("--acme-email", metavar="ADDRESS", help="Contact address for the ACME account (expiry notices).")
@click.option(
    "--acme-agree-tos", is_flag=True, help="Agree to the ACME CA's terms of service (required with --acme-domain)."
)
@click.option(
    "--acme-directory",
    metavar="URL",
    help="ACME directory URL of another CA (default: Let's Encrypt production).",
)
@click.option(
    "--acme-staging", is_flag=True, help="Use Let's Encrypt's staging CA (untrusted certificates; for trials)."
)
@click.option("--acme-ca-bundle", metavar="FILE", help="CA bundle to trust the ACME server itself (Pebble, step-ca).")
@click.option(
    "--acme-dir", metavar="DIR", help="Where the ACME account and certificates are kept (or $ASGIGW_ACME_DIR)."
)
@click.option(
    "--acme-challenge",
    type=click.Choice(["auto", "tls-alpn-01", "http-01"]),
    default="auto",
    show_default=True,
    help="How the CA checks the name: tls-alpn-01 on the TLS port, http-01 on port 80; auto picks.",
)
@click.option("--acme-eab-kid", metavar="KID", help="External account binding key id (ZeroSSL-style CAs).")
@click.option("--acme-eab-hmac", metavar="KEY", help="External account binding HMAC key, base64url.")
@click.option(
    "--static",
    multiple=True,
    metavar="URL_PREFIX=DIR",
    help="Serve files in DIR under URL_PREFIX (e.g. /static/=staticfiles) without calling the app; repeatable.",
)
@click.option(
    "--static-max-age",
    type=int,
    default=3600,
    show_default=True,
    help="Cache-Control max-age of --static files in seconds; 0 = no-cache.",
)
@click.option(
    "--hsts",
    type=int,
    metavar="SECONDS",
    help="Send Strict-Transport-Security: max-age=SECONDS on responses over TLS (not on plain HTTP).",
)
@click.option("--hsts-include-subdomains", is_flag=True, help="Add includeSubDomains to --hsts.")
@click.option(
    "--hsts-preload",
    is_flag=True,
    help="Add preload to --hsts (needs --hsts-include-subdomains and --hsts 31536000 or more).",
)
@click.option(
    "--header",
    "response_headers",
    multiple=True,
    metavar='"NAME: VALUE"',
    help="Add this field to every response that has none of that name; repeatable.",
)
@click.option(
    "--compress/--no-compress",
    default=False,
    show_default=True,
    help="Compress responses on the fly (gzip; br, zstd with asgigw[compress]). Mind BREACH: docs/compression.md.",
)
@click.option(
    "--compress-types",
    default=",".join(DEFAULT_COMPRESS_TYPES),
    show_default=True,
    metavar="TYPE,...",
    help="Media types --compress applies to: type/subtype, type/* or type/*+suffix, comma-separated.",
)
@click.option(
    "--compress-min-size",
    type=int,
    default=1024,
    show_default=True,
    help="Content-Length below which --compress leaves a response as it is (bytes).",
)
@click.option("--root-path", default="", help="Path prefix the app is mounted at behind a proxy (ASGI root_path).")
@click.option(
    "--lifespan",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="ASGI lifespan events.",
)
@click.option(
    "--interface",
    type=click.Choice(["auto", "asgi3", "asgi2"]),
    default="auto",
    show_default=True,
    help="How APP is called: asgi3 app(scope, receive, send), asgi2 app(scope)(receive, send), or auto-detect.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True, help="Log level.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One log line per response.")
@click.option(
    "--access-log-file",
    metavar="FILE",
    help="Append access-log lines to FILE instead of stderr; reopened on SIGUSR1 (POSIX) for logrotate.",
)
@click.option(
    "--access-log-format",
    default="default",
    show_default=True,
    metavar="FORMAT",
    help="Access-log line: default, common, combined, json, or a template such as "
    "'{client} {method} {path} {status}' (fields: docs/logging.md).",
)
@click.option(
    "--log-config",
    metavar="FILE",
    help="logging.config.dictConfig file (.json, .toml, or .yaml with PyYAML) for gateway.error and gateway.access.",
)
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
    "--body-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a client may pause while sending a request body.",
)
@click.option(
    "--send-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a client may leave our data unread before it is dropped.",
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
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes sharing the listeners (about one per CPU core); 1 serves in this process.",
)
@click.option(
    "--metrics-bind",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (its own listener; needs asgigw[metrics]).",
)
@click.option(
    "--health-path",
    metavar="PATH",
    help="Answer PATH on the app's listeners without the app: 200 while serving, 503 while draining.",
)
@click.option(
    "--max-requests",
    type=int,
    default=0,
    show_default=True,
    help="Replace a worker after it served this many requests (new one first, then the old drains); 0 = never.",
)
@click.option(
    "--max-requests-jitter",
    type=int,
    default=0,
    show_default=True,
    help="Add a random 0..N to each worker's --max-requests, so workers are not replaced all at once.",
)
@click.option(
    "--reload",
    is_flag=True,
    help="Restart the workers when a watched file changes (new ones first; the old drain). For development.",
)
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    metavar="DIR",
    help="Folder to watch with --reload (default: --app-dir); repeatable.",
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    metavar="GLOB",
    help="File names that trigger --reload (default *.py); repeatable.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    metavar="GLOB",
    help="File or folder names --reload ignores (default: .*, __pycache__, *.pyc, venv folders); repeatable.",
)
@click.option(
    "--ws-per-message-deflate/--no-ws-per-message-deflate",
    default=True,
    show_default=True,
    help="Accept WebSocket permessage-deflate compression when a client offers it.",
)
@click.option(
    "--ws-max-message-size",
    type=int,
    default=16 * MiB,
    show_default=True,
    help="Largest WebSocket message in bytes, after decompression (close 1009 beyond); 0 = unlimited.",
)
@click.option(
    "--ws-ping-interval", type=float, default=20.0, show_default=True, help="Seconds between WebSocket pings; 0 = off."
)
@click.option(
    "--ws-ping-timeout",
    type=float,
    default=20.0,
    show_default=True,
    help="Seconds to wait for a pong before closing the WebSocket.",
)
@click.option(
    "--ws-close-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to wait for the client's close frame after the server's (and for the app's last replies after the client's).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="Event loop; uvloop is winloop on Windows. auto: uvloop if installed (asgigw[fast]), else asyncio.",
)
@click.option(
    "--http1-parser",
    type=click.Choice(["auto", "h11", "httptools"]),
    default="auto",
    show_default=True,
    help="HTTP/1.1 request parser. auto: httptools if installed (asgigw[fast]), else h11.",
)
@click.option(
    "--http2/--no-http2",
    default=True,
    show_default=True,
    help="Serve HTTP/2: ALPN h2 on TLS, prior knowledge and Upgrade: h2c on plain HTTP.",
)
@click.option(
    "--h2-max-concurrent-streams",
    type=int,
    default=100,
    show_default=True,
    help="HTTP/2 streams open at once per connection; more get REFUSED_STREAM.",
)
@click.option(
    "--h2-max-header-list-size",
    type=int,
    default=64 * KiB,
    show_default=True,
    help="Largest HTTP/2 header block in bytes, compressed and decoded.",
)
@click.option(
    "--h2-initial-window-size",
    type=int,
    default=64 * KiB,
    show_default=True,
    help="HTTP/2 request-body bytes buffered per stream before the app reads them.",
)
@click.option(
    "--h2-max-frame-size", type=int, default=16 * KiB, show_default=True, help="Largest HTTP/2 frame we accept."
)
@click.option(
    "--h2-send-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a response waits for the HTTP/2 peer's window or reading before it is dropped.",
)
@click.option(
    "--h2-max-resets",
    type=int,
    default=200,
    show_default=True,
    help="Stream resets per HTTP/2 connection per 10 s before GOAWAY ENHANCE_YOUR_CALM.",
)
@click.option(
    "--h2-max-control-frames",
    type=int,
    default=1000,
    show_default=True,
    help="PING/SETTINGS/WINDOW_UPDATE/PRIORITY/empty DATA frames per 10 s (plus 2 per DATA frame sent, 1 per request).",
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="Take client address, scheme (and host) from Forwarded / X-Forwarded-* sent by trusted proxies.",
)
@click.option(
    "--forwarded-allow-ips",
    multiple=True,
    metavar="ADDRESSES",
    help="Proxies trusted by --proxy-headers: IPs, networks (10.0.0.0/8) or *, comma-separated; repeatable."
    "  [default: 127.0.0.1,::1]",
)
@click.option(
    "--forwarded-host", is_flag=True, help="With --proxy-headers, let X-Forwarded-Host / host= replace the Host header."
)
@click.option(
    "--proxy-protocol", is_flag=True, help="Every --bind listener expects a PROXY protocol v1/v2 header first."
)
@click.option(
    "--proxy-protocol-bind",
    multiple=True,
    metavar="HOST:PORT",
    help="Extra listener (same TLS) that expects a PROXY protocol header first; repeatable.",
)
@click.option(
    "--redirect-http",
    multiple=True,
    metavar="HOST:PORT",
    help="Plain-HTTP listener answering 308 to the https URL (ACME http-01 excepted); repeatable.",
)
def main(
    app: str | None,
    config: str | None,
    env_file: str | None,
    print_config: bool,
    factory: bool,
    app_dir: str,
    bind: tuple[str, ...],
    no_tls: bool,
    **options: Any,
) -> None:
    """Serve the ASGI application APP (module:attribute, e.g. proj.asgi:application).

    Options also come from ASGIGW_<OPTION> environment variables and a --config file;
    the command line wins, then the environment, then the file.
    """
    ctx = click.get_current_context()
    if print_config:
        source: ConfigFile | None = ctx.meta.get(CONFIG_FILE)
        click.echo(render_effective_config(ctx, source, (ctx.obj or {}).get(ENV_FILE_NAMES, set())), nl=False)
        sys.exit(0)
    if not app:
        _fail("missing APP, the application to serve (module:attribute, e.g. proj.asgi:application)")
    try:
        if no_tls and options["certfile"]:
            raise ConfigError("--no-tls and --cert exclude each other")
        if options["acme_domains"] and (options["certfile"] or no_tls):
            # After start-up the Config points certfile at the ACME files; only here can
            # a user's own --cert be told apart from them.
            raise ConfigError("--acme-domain excludes --cert and --no-tls: the ACME CA provides the certificate")
        allow = options.pop("forwarded_allow_ips")
        if allow:
            options["forwarded_allow_ips"] = tuple(part.strip() for entry in allow for part in entry.split(","))
        options["compress_types"] = tuple(part.strip() for part in options["compress_types"].split(",") if part.strip())
        settings = Config(bind=bind, dev_tls=not no_tls, **options)
    except ConfigError as exc:
        _fail(_name_the_file(str(exc), ctx))
    _serve(app, factory, app_dir, settings)


def _name_the_file(message: str, ctx: click.Context) -> str:
    """Prefix a Config error with the config file when the option it names came from there."""
    source: ConfigFile | None = ctx.meta.get(CONFIG_FILE)
    if source is None:
        return message
    for parameter in ctx.command.params:
        name = parameter.name or ""
        if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT_MAP:
            if any(message.startswith(option) or f" {option} " in message for option in parameter.opts):
                return f"{source.path}: {message}"
    return message


def _serve(app: str, factory: bool, app_dir: str, config: Config) -> NoReturn:
    if config.supervised:
        # Imported here, so that one process pays nothing for multiprocessing.
        from gateway.workers import AppSpec, run_workers

        # Each worker imports the app itself; this process only checks the form of APP.
        try:
            split_target(app)
        except AppLoadError as exc:
            _fail(str(exc))
        sys.exit(run_workers(AppSpec(app, factory=factory, app_dir=app_dir), config))
    try:
        application = load_app(app, factory=factory, app_dir=app_dir, interface=config.interface)
    except AppLoadError as exc:
        _fail(str(exc))
    except Exception as exc:  # the app's own module raised while importing: show where
        traceback.print_exc()
        _fail(f"error importing {app!r}: {type(exc).__name__}: {exc}")
    sys.exit(run(application, config))
