"""What every connection of one server shares: config, app, lifespan state, bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.access_log import AccessLogFormatter, formatter_for
from gateway.config import Config
from gateway.response_headers import ResponseHeaders
from gateway.static import StaticFiles

if TYPE_CHECKING:
    from gateway.asgi import ASGIApp
    from gateway.compression import Compression
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
    # The compiled --access-log-format, or None when access lines go nowhere: decided once
    # at start-up so the hot path tests one attribute, not the logging machinery.
    access_log: AccessLogFormatter | None = None
    # The --static folders; None without any, so other requests pay one attribute test.
    static: StaticFiles | None = None
    # Requests and WebSocket sessions started so far, and the count at which
    # ``on_request_limit`` is called once (--max-requests in a worker; 0 = never).
    requests_started: int = 0
    request_limit: int = 0
    on_request_limit: Callable[[], None] | None = None
    # --hsts/--header and --compress; None when off (streams/response_filter.py).
    response_headers: ResponseHeaders | None = None
    compression: Compression | None = None

    def __post_init__(self) -> None:
        if self.config.static:
            self.static = StaticFiles(self.config.static, self.config.static_max_age)
        self.response_headers = ResponseHeaders.from_config(self.config)
        if self.config.compress:
            # Imported only with --compress: it looks for brotli and zstandard.
            from gateway.compression import Compression

            self.compression = Compression(self.config)
        self.access_log = formatter_for(self.config)

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
