"""``asgigw [OPTIONS] APP``: command-line options -> Config -> Server. No protocol logic."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import click

from gateway.cli_options import serve_options
from gateway.config import Config, ConfigError
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
from gateway.entry import run
from gateway.loader import AppLoadError, load_app, split_target
from gateway.version_info import version_text


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
@serve_options
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
