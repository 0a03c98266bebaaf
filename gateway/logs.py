"""Logging set-up for the CLI and ``gateway.run``: operators' one-line-per-event logs.

Also the one escaping rule every client-provided value goes through before any log line
shows it (:func:`escape`), so a request can neither forge a line nor reach the terminal
with control characters (the class of CVE-2020-7694).
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.config
import os
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
LOGGER_NAMES = ("gateway", "gateway.error", "gateway.access")

# Printable characters that still make a line ambiguous: the escape character itself, and
# the quote that delimits fields in the common/combined formats (nginx writes \x22 too).
_NAMED_ESCAPES = {"\\": "\\\\", '"': "\\x22", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class LoggingSetupError(ValueError):
    """A --log-config or --access-log-file file cannot be used; the message says why, in one line."""


def escape(text: str) -> str:
    """``text`` with every non-printable character, backslash and double quote escaped.

    ``\\n``, ``\\r``, ``\\t``, ``\\\\`` and ``\\x22`` by name; other characters below U+0100
    as ``\\xNN``; bytes that were not UTF-8 (kept as lone surrogates by ``surrogateescape``)
    as the ``\\xNN`` of the original byte; other non-printable code points as ``\\uNNNN``.
    Printable non-ASCII text stays as it is. The common case costs three C-level scans.
    """
    if text.isprintable() and "\\" not in text and '"' not in text:
        return text
    return "".join([_escape_character(char) for char in text])


def escape_bytes(data: bytes) -> str:
    """Client bytes (a header, a query string) as text for a log line, escaped."""
    return escape(data.decode("utf-8", "surrogateescape"))


def _escape_character(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: an undecodable byte 0x80..0xFF
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def configure_logging(
    level: str,
    access_log: bool,
    role: str | None = None,
    *,
    access_log_file: str | None = None,
    bare_access_lines: bool = False,
    log_config: str | None = None,
) -> None:
    """Send ``gateway.*`` logs to stderr at ``level``; the access log only if enabled.

    ``role`` ("supervisor", "worker") puts it and the process id on every line, so the
    interleaved lines of several processes say which one wrote them. Access lines go to
    ``access_log_file`` (appended) when given; ``bare_access_lines`` writes them without the
    time/level prefix (formats that carry their own time, or JSON). ``log_config`` is a
    dictConfig file applied last, so it can change any of this. Raises LoggingSetupError.
    """
    handler = logging.StreamHandler(sys.stderr)
    who = f"[{role} %(process)d] " if role else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s [%(levelname)s] {who}%(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("gateway")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    root.propagate = False
    access = logging.getLogger("gateway.access")
    access.disabled = not access_log
    access.handlers[:] = []
    access.propagate = True
    if access_log and (access_log_file is not None or bare_access_lines):
        access_handler = _open_access_handler(access_log_file)
        if bare_access_lines:
            access_handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            access_handler.setFormatter(handler.formatter)
        access.handlers[:] = [access_handler]
        access.propagate = False
    if log_config is not None:
        apply_log_config(log_config)


def _open_access_handler(path: str | None) -> logging.Handler:
    if path is None:
        return logging.StreamHandler(sys.stderr)
    try:
        return logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise LoggingSetupError(f"--access-log-file {path!r}: {exc.strerror or exc}") from None


def apply_log_config(path: str) -> None:
    """Apply a ``logging.config.dictConfig`` file: JSON, TOML, or YAML when PyYAML is there.

    Loggers the file does not name keep working (``disable_existing_loggers`` defaults to
    false here, unlike dictConfig's own default, so ``gateway.error`` survives a file that
    only sets up ``gateway.access``).
    """
    suffix = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as file:
            data = file.read()
        if suffix == ".toml":
            settings: Any = tomllib.loads(data.decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            try:
                yaml = importlib.import_module("yaml")  # PyYAML: optional, only for YAML files
            except ImportError:
                raise LoggingSetupError(f"--log-config {path!r}: YAML needs PyYAML (pip install pyyaml)") from None
            settings = yaml.safe_load(data)
        else:
            settings = json.loads(data)
    except (OSError, ValueError) as exc:  # JSONDecodeError, TOMLDecodeError, UnicodeError
        if isinstance(exc, LoggingSetupError):
            raise
        raise LoggingSetupError(f"--log-config {path!r}: {_one_line(exc)}") from None
    except Exception as exc:  # yaml.YAMLError has no common base with the others
        raise LoggingSetupError(f"--log-config {path!r}: {_one_line(exc)}") from None
    if not isinstance(settings, dict):
        raise LoggingSetupError(f"--log-config {path!r}: expected a mapping at the top level")
    settings.setdefault("version", 1)
    settings.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(settings)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise LoggingSetupError(f"--log-config {path!r}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def reopen_log_files() -> int:
    """Give every file handler of the ``gateway`` loggers a new handle (after logrotate).

    The old file may have been renamed: the handler opens its path again and closes the
    old descriptor, so lines go to the new file. Returns the number of files reopened.
    """
    handlers: list[logging.FileHandler] = []
    for name in LOGGER_NAMES:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler) and handler not in handlers:
                handlers.append(handler)
    for handler in handlers:
        try:
            # Always append: a "w" handler must not wipe what it wrote since the rotation.
            stream = open(handler.baseFilename, "a", encoding=handler.encoding, errors=handler.errors)
        except OSError as exc:
            logging.getLogger("gateway.error").error("cannot reopen log file %s: %s", handler.baseFilename, exc)
            continue
        old = handler.setStream(stream)
        if old is not None:
            old.close()
    return len(handlers)


def report_startup_error(message: str) -> None:
    """The one form of every start-up error (docs/options.md): ``asgigw: error: ...`` on stderr.

    The CLI's own checks, bad certificates, unbindable addresses and app-import errors all
    end this way with exit code 2, whether they are found by the CLI or by the server.
    """
    print(f"asgigw: error: {message}", file=sys.stderr, flush=True)


def address_label(address: Sequence[Any] | None) -> str:
    """``host:port`` as log lines show a peer: IPv6 in brackets, ``-`` when unknown.

    The host is escaped: behind trusted proxies it may come from a request header.
    """
    if not address:
        return "-"
    host, port = address[0], address[1]
    if type(host) is not str or not host.isprintable() or "\\" in host or '"' in host:
        host = escape(str(host))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
