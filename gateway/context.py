"""What every connection of one server shares: config, app, lifespan state, bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.accelerators import HTTP1ParserName, http1_parser_in_use
from gateway.access_log import AccessLogFormatter, formatter_for
from gateway.config import Config
from gateway.health import HealthCheck
from gateway.limits import ConnectionLimits, RequestLimits
from gateway.metrics import Metrics
from gateway.proxy_headers import TrustedProxies
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
    # --health-path, answered without the app; None without one.
    health: HealthCheck | None = None
    # Counters for --metrics-bind (gateway/metrics.py); None without metrics.
    metrics: Metrics | None = None
    # The HTTP/1.1 parser every connection uses (--http1-parser, resolved once).
    http1_parser: HTTP1ParserName = "h11"
    # Requests and WebSocket sessions started so far, and the count at which
    # ``on_request_limit`` is called once (--max-requests in a worker; 0 = never).
    requests_started: int = 0
    request_limit: int = 0
    on_request_limit: Callable[[], None] | None = None
    # --limit-concurrency / --rate-limit, and --max-connections / --max-connections-per-ip
    # (gateway/limits/); None when off, so the hot path tests one attribute.
    request_limits: RequestLimits | None = None
    connection_limits: ConnectionLimits | None = None
    # --forwarded-allow-ips, parsed once; None without --proxy-headers.
    proxies: TrustedProxies | None = None
    # --hsts/--header and --compress; None when off (streams/response_filter.py).
    response_headers: ResponseHeaders | None = None
    compression: Compression | None = None
    # The loop serving this context, set by Server.serve. On CPython 3.11 every
    # asyncio.get_running_loop() call costs a getpid() system call (its fork check), which
    # strace showed once per request; the hot path asks here instead (see event_loop).
    loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.request_limits = RequestLimits.from_config(self.config)
        self.connection_limits = ConnectionLimits.from_config(self.config)
        self.http1_parser = http1_parser_in_use(self.config.http1_parser)
        if self.config.static:
            self.static = StaticFiles(self.config.static, self.config.static_max_age)
        if self.config.health_path:
            self.health = HealthCheck(self.config.health_path, lambda: self.shutting_down)
        if self.config.proxy_headers:
            self.proxies = TrustedProxies(self.config.forwarded_allow_ips, use_host=self.config.forwarded_host)
        self.response_headers = ResponseHeaders.from_config(self.config)
        if self.config.compress:
            # Imported only with --compress: it looks for brotli and zstandard.
            from gateway.compression import Compression

            self.compression = Compression(self.config)
        self.access_log = formatter_for(self.config)

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, without a system call when Server.serve has said which it is."""
        loop = self.loop
        return loop if loop is not None else asyncio.get_running_loop()

    def start_app_task(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one request's (or WebSocket's) app task; shutdown waits for it.

        Every request passes here once, so it is also where a worker counts towards
        --max-requests: one increment and one comparison on the hot path.
        """
        task = self.event_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.requests_started += 1
        if self.requests_started == self.request_limit and self.on_request_limit is not None:
            self.on_request_limit()
        return task
