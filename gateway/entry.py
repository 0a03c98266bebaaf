"""The public entry points ``gateway.run()`` and ``gateway.serve()`` (the entry layer).

``run()`` chooses between one process (a :class:`~gateway.server.Server` on a new event
loop) and a supervisor with workers (gateway/workers.py); it lives here, above both, so that
the process layer's modules never import each other in a circle.
"""

from __future__ import annotations

from typing import Any

from gateway import platform
from gateway.access_log import setup_logging
from gateway.config import Config, ConfigError
from gateway.listeners import StartupError
from gateway.loader import load_app
from gateway.logs import report_startup_error
from gateway.server import Server


def _single_process(config: Config) -> Config:
    # The Server runs in this process; several need the app as "module:attr" (each worker
    # imports it), which only gateway.run() and the CLI take.
    if config.supervised:
        raise ConfigError(
            "workers > 1, max_requests or reload: a supervisor needs the app as a 'module:attribute' string,"
            " since each worker process imports it: gateway.run('proj.asgi:application', workers=N) or asgigw"
        )
    return config


async def serve(app: Any, config: Config | None = None, *, handle_signals: bool = True, **options: Any) -> int:
    """Serve ``app`` until shutdown: ``await gateway.serve(app, port=8443, certfile=...)``."""
    if config is None:
        config = Config(**options)
    elif options:
        config = config.replace(**options)
    return await Server(app, _single_process(config)).serve(handle_signals=handle_signals)


def run(
    app: Any, config: Config | None = None, *, factory: bool = False, app_dir: str | None = None, **options: Any
) -> int:
    """Blocking: create an event loop, serve ``app`` until stopped, return the exit code.

    ``app`` is an ASGI application, or a ``"module:attribute"`` string to import (called
    first if ``factory``; ``app_dir`` goes first on ``sys.path``). With ``workers`` > 1 it
    must be a string: a supervisor binds the addresses and starts that many worker
    processes, each importing the app itself (see gateway/workers.py).
    """
    if config is None:
        config = Config(**options)
    elif options:
        config = config.replace(**options)
    if isinstance(app, str) and config.supervised:
        # Imported here, so that one process pays nothing for multiprocessing.
        from gateway.workers import AppSpec, run_workers

        return run_workers(AppSpec(app, factory=factory, app_dir=app_dir), config)
    try:
        setup_logging(config)
    except ConfigError as exc:
        report_startup_error(str(exc))
        return 2
    if isinstance(app, str):
        app = load_app(app, factory=factory, app_dir=app_dir, interface=config.interface)
    try:
        loop = platform.new_event_loop(config.loop)
    except ConfigError as exc:
        report_startup_error(str(exc))
        return 2
    try:
        return loop.run_until_complete(serve(app, config))
    except (ConfigError, StartupError) as exc:
        report_startup_error(str(exc))
        return 2
    finally:
        loop.close()
