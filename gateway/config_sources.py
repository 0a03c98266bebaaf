"""Where option values come from besides the command line: a TOML file, an env file.

Precedence (highest first): command line, environment (``ASGIGW_<NAME>``, then the
``--env-file``), the config file (``--config FILE`` or ``[tool.asgigw]`` in
``./pyproject.toml``), the defaults. Click applies command line > environment > its
``default_map``; this module fills that ``default_map`` from the file after checking every
key and type, so a mistake is one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

ENV_PREFIX = "ASGIGW"
# Keys of a config file that are not options: the application to serve.
APP_KEY = "app"


class ConfigSourceError(ValueError):
    """A config or env file cannot be used; the message names the file and the key."""


@dataclass
class ConfigFile:
    """A parsed config file: its option values, keyed by click parameter name."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    app: str | None = None


def env_name(parameter: click.Parameter) -> str:
    """``ASGIGW_KEEP_ALIVE_TIMEOUT`` for ``--keep-alive-timeout`` (click's auto_envvar_prefix)."""
    return f"{ENV_PREFIX}_{(parameter.name or '').upper()}"


def option_key(parameter: click.Parameter) -> str:
    """The config-file key of an option: its first long name without dashes."""
    longs = [name for name in parameter.opts if name.startswith("--")]
    return (longs[0] if longs else parameter.opts[0]).lstrip("-")


def read_config_file(path: str, command: click.Command) -> ConfigFile:
    """Read ``path`` (TOML) and check every key against ``command``'s options."""
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise ConfigSourceError(f"--config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigSourceError(f"{path}: not valid TOML: {exc}") from None
    return _from_table(path, table, command)


def find_pyproject_table(command: click.Command, folder: str = ".") -> ConfigFile | None:
    """``[tool.asgigw]`` of ``folder/pyproject.toml``, when the project has that table."""
    path = Path(folder).resolve() / "pyproject.toml"
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        # A pyproject.toml we cannot read is the build tools' business, not ours: only an
        # explicit --config must be readable.
        return None
    tool = document.get("tool")
    table = tool.get("asgigw") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        return None
    return _from_table(f"{path} [tool.asgigw]", table, command)


def _from_table(source: str, table: Mapping[str, Any], command: click.Command) -> ConfigFile:
    by_key = {option_key(parameter): parameter for parameter in command.params if isinstance(parameter, click.Option)}
    result = ConfigFile(source)
    for key, value in table.items():
        if key == APP_KEY:
            if not isinstance(value, str):
                raise ConfigSourceError(f"{source}: key 'app': expected a string like \"proj.asgi:application\"")
            result.app = value
            continue
        parameter = by_key.get(key)
        if parameter is None or key in _FILE_ONLY_ELSEWHERE:
            raise ConfigSourceError(f"{source}: unknown key '{key}' (keys are asgigw's long option names)")
        assert parameter.name is not None
        result.values[parameter.name] = _checked(source, key, parameter, value)
    return result


# Options that choose the sources themselves make no sense inside a config file.
_FILE_ONLY_ELSEWHERE = frozenset({"config", "env-file", "print-config", "version", "help"})


def _checked(source: str, key: str, parameter: click.Option, value: Any) -> Any:
    """``value`` as click expects it for ``parameter``, or a one-line error."""
    if parameter.multiple:
        if isinstance(value, dict) and parameter.metavar and "=" in parameter.metavar:
            value = [f"{name}={item}" for name, item in value.items()]
        elif isinstance(value, dict) and parameter.metavar and ":" in parameter.metavar:
            value = [f"{name}: {item}" for name, item in value.items()]
        elif not isinstance(value, list):
            value = [value]
        return [_scalar(source, key, parameter, item, in_list=True) for item in value]
    return _scalar(source, key, parameter, value, in_list=False)


def _scalar(source: str, key: str, parameter: click.Option, value: Any, *, in_list: bool) -> Any:
    kind = parameter.type
    where = f"{source}: key '{key}'"
    if parameter.is_flag or isinstance(kind, click.types.BoolParamType):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(kind, click.types.IntParamType):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif isinstance(kind, click.types.FloatParamType):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    elif isinstance(kind, click.Choice):
        choices = [str(choice) for choice in kind.choices]
        if isinstance(value, str) and value in choices:
            return value
        expected = "one of " + ", ".join(f'"{choice}"' for choice in choices)
    else:
        if isinstance(value, str):
            return value
        expected = "a string"
    if parameter.multiple and not in_list:
        expected = f"a list of {expected}"
    raise ConfigSourceError(f"{where}: expected {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefix, ``#`` comments and quotes allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigSourceError(f"--env-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigSourceError(f"--env-file {path}: not UTF-8 text") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigSourceError(f"{path}:{number}: expected NAME=VALUE, got {raw.strip()[:60]!r}")
        values[name] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace('\\"', '"').replace("\\n", "\n") if value[0] == '"' else inner
    # An unquoted value ends at a comment.
    return value.split(" #", 1)[0].rstrip()


def apply_env_file(values: Mapping[str, str], environ: dict[str, str] | None = None) -> set[str]:
    """Put the env file's values into the environment unless already set there.

    The real environment wins over the file (as with systemd's ``Environment=`` over
    ``EnvironmentFile=`` ordering, and docker's ``-e`` over ``--env-file``). Returns the
    names that the file set, so ``--print-config`` can tell the two apart.
    """
    target = os.environ if environ is None else environ
    applied = set()
    for name, value in values.items():
        if name not in target:
            target[name] = value
            applied.add(name)
    return applied
