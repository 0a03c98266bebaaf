"""``asgigw --print-config``: the effective options as TOML, each with where it came from.

The output is itself a valid ``--config`` file (values the user did not set are comments),
so an operator can capture a working command line into a file. Secrets are masked.
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any

import click
from click.core import ParameterSource

from gateway.config_sources import ConfigFile, env_name, option_key

# Options whose values must never be printed (a key's password, an ACME account's HMAC key).
SECRET_OPTIONS = frozenset({"key_password", "acme_eab_hmac"})
# Options that choose where the others come from; not part of the effective configuration.
SOURCE_OPTIONS = frozenset({"config", "env_file", "print_config"})
MASK = "********"


def render_effective_config(ctx: click.Context, source: ConfigFile | None, env_file_names: Set[str]) -> str:
    """One ``key = value  # source`` line per option, in --help order, ending with a newline."""
    lines = ["# asgigw effective configuration: command line > environment > config file > defaults"]
    if source is not None:
        lines.append(f"# config file: {source.path}")
    for parameter in ctx.command.params:
        name = parameter.name or ""
        if name in SOURCE_OPTIONS or not parameter.expose_value:
            continue
        value = ctx.params.get(name)
        key = "app" if isinstance(parameter, click.Argument) else option_key(parameter)
        where = _describe_source(ctx, parameter, source, env_file_names)
        if value is None:
            lines.append(f"# {key} = (not set)  # {where}")
            continue
        shown = json.dumps(MASK) if name in SECRET_OPTIONS else _toml_value(value)
        lines.append(f"{key} = {shown}  # {where}")
    return "\n".join(lines) + "\n"


def _describe_source(
    ctx: click.Context, parameter: click.Parameter, source: ConfigFile | None, env_file_names: Set[str]
) -> str:
    origin = ctx.get_parameter_source(parameter.name or "")
    if origin is ParameterSource.COMMANDLINE:
        return "command line"
    if origin is ParameterSource.ENVIRONMENT:
        variable = _env_variable(ctx, parameter)
        return f"env file ({variable})" if variable in env_file_names else f"environment ({variable})"
    if origin is ParameterSource.DEFAULT_MAP:
        return source.path if source is not None else "config file"
    return "default"


def _env_variable(ctx: click.Context, parameter: click.Parameter) -> str:
    explicit = parameter.envvar
    if isinstance(explicit, str):
        return explicit
    return env_name(parameter)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    # JSON strings are TOML basic strings for everything click hands us (text, paths).
    return json.dumps(str(value), ensure_ascii=False)
