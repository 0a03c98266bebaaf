"""What every connection of one server shares: config, app, lifespan state, bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.limits import ConnectionLimits, RequestLimits
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
    # --limit-concurrency / --rate-limit, and --max-connections / --max-connections-per-ip
    # (gateway/limits/); None when off, so the hot path tests one attribute.
    request_limits: RequestLimits | None = None
    connection_limits: ConnectionLimits | None = None

    def __post_init__(self) -> None:
        self.request_limits = RequestLimits.from_config(self.config)
        self.connection_limits = ConnectionLimits.from_config(self.config)
        if self.config.static:
            self.static = StaticFiles(self.config.static, self.config.static_max_age)
        self.access_log = self.config.access_log and logging.getLogger("gateway.access").isEnabledFor(logging.INFO)
