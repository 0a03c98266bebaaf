"""asgigw: an ASGI gateway that terminates TLS and speaks HTTP/1.1 to ASGI applications.

Start it from Python with ``gateway.run(app, port=8443, certfile=..., keyfile=...)`` or,
inside a running event loop, ``await gateway.serve(app, ...)``. Several worker processes
need the app as an import string: ``gateway.run("proj.asgi:application", workers=4)``.
"""

from __future__ import annotations

from gateway.config import Config, ConfigError
from gateway.entry import run, serve
from gateway.server import Server

__all__ = ["Config", "ConfigError", "Server", "run", "serve"]
__version__ = "0.1.0"
