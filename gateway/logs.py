"""Logging set-up for the CLI and ``gateway.run``: operators' one-line-per-event logs."""

from __future__ import annotations

import logging
import sys
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


def configure_logging(level: str, access_log: bool, role: str | None = None) -> None:
    """Send ``gateway.*`` logs to stderr at ``level``; the access log only if enabled.

    ``role`` ("supervisor", "worker") puts it and the process id on every line, so the
    interleaved lines of several processes say which one wrote them.
    """
    handler = logging.StreamHandler(sys.stderr)
    who = f"[{role} %(process)d] " if role else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s [%(levelname)s] {who}%(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("gateway")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    root.propagate = False
    logging.getLogger("gateway.access").disabled = not access_log


def report_startup_error(message: str) -> None:
    """The one form of every start-up error (docs/options.md): ``asgigw: error: ...`` on stderr.

    The CLI's own checks, bad certificates, unbindable addresses and app-import errors all
    end this way with exit code 2, whether they are found by the CLI or by the server.
    """
    print(f"asgigw: error: {message}", file=sys.stderr, flush=True)


def address_label(address: Sequence[Any] | None) -> str:
    """``host:port`` as log lines show a peer: IPv6 in brackets, ``-`` when unknown."""
    if not address:
        return "-"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
