"""What every connection of one server shares: config, app, lifespan state, bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.static import StaticFiles

if TYPE_CHECKING:
    from gateway.asgi import ASGIApp
    from gateway.connection import Connection


@dataclass(slots=True)
class ServerContext:
    """Shared, mutable state of one running server.

    ``state`` is the lifespan state (``None`` when lifespan is off or unsupported), copied
    into every scope. ``connections`` lets graceful shutdown reach every open connection.
    """

    config: Config
    app: ASGIApp
    state: dict[str, Any] | None = None
    connections: set[Connection] = field(default_factory=set)
    # App tasks still running, including those whose client has gone: shutdown waits for
    # them within the graceful timeout and cancels the rest.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    shutting_down: bool = False
    # Decided once at start-up so the hot path tests a bool, not the logging machinery.
    access_log: bool = False
    # The --static folders; None without any, so other requests pay one attribute test.
    static: StaticFiles | None = None
    # Requests and WebSocket sessions started so far, and the count at which
    # ``on_request_limit`` is called once (--max-requests in a worker; 0 = never).
    requests_started: int = 0
    request_limit: int = 0
    on_request_limit: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.config.static:
            self.static = StaticFiles(self.config.static, self.config.static_max_age)
        self.access_log = self.config.access_log and logging.getLogger("gateway.access").isEnabledFor(logging.INFO)

    def start_app_task(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one request's (or WebSocket's) app task; shutdown waits for it.

        Every request passes here once, so it is also where a worker counts towards
        --max-requests: one increment and one comparison on the hot path.
        """
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.requests_started += 1
        if self.requests_started == self.request_limit and self.on_request_limit is not None:
            self.on_request_limit()
        return task
