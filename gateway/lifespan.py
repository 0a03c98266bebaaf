"""The ASGI lifespan protocol: startup and shutdown events, and the shared ``state``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.asgi import ASGI_VERSION, ASGIApp, Message
from gateway.config import LifespanMode

log = logging.getLogger("gateway.error")


class LifespanFailure(Exception):
    """Startup or shutdown failed; the message is the app's own or the exception's."""


class Lifespan:
    """Runs the app's lifespan task for the life of the server."""

    def __init__(self, app: ASGIApp, mode: LifespanMode) -> None:
        self._app = app
        self._mode = mode
        self.state: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._supported = mode != "off"
        self._error: BaseException | None = None

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the answer; raise LifespanFailure on failure."""
        if not self._supported:
            return
        self.state = {}
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            self.state = None
            return
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"application startup failed: {reply.get('message', '')}".rstrip(": "))
        if reply["type"] != "lifespan.startup.complete":
            raise LifespanFailure(f"unexpected lifespan message during startup: {reply['type']!r}")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait; failures are logged (the server stops anyway)."""
        if not self._supported or self._task is None:
            return
        if self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        get = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait({get, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            reply = get.result()
            if reply["type"] == "lifespan.shutdown.failed":
                log.error("application shutdown failed: %s", reply.get("message", ""))
        else:
            # The app raised or returned instead of answering. It did support lifespan (its
            # startup completed), so this is a failure in auto mode too, and only logged.
            get.cancel()
            error = self._error
            if self._task.cancelled():
                log.warning("application shutdown cancelled by a second stop request")
                return
            reason = f"{type(error).__name__}: {error}" if error else "the app returned without answering"
            log.error("application shutdown failed: %s", reason)
        await asyncio.wait({self._task}, timeout=5)
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)

    def cancel(self) -> None:
        """Stop the app's lifespan task now: a second stop request ends a hanging shutdown."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _reply(self) -> Message | None:
        """The app's next message, or None if lifespan turned out to be unsupported."""
        assert self._task is not None
        get = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait({get, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            return get.result()
        get.cancel()
        if self._task.cancelled():
            raise LifespanFailure("application startup cancelled by a second stop request")
        error = self._error
        if self._mode == "on":
            reason = f"{type(error).__name__}: {error}" if error else "the app returned"
            raise LifespanFailure(f"lifespan failed ({reason}) and --lifespan on requires it")
        # --lifespan auto: an app without lifespan support (Django's plain ASGI handler
        # raises on the unknown scope type) is served without it.
        log.info("ASGI 'lifespan' is not supported by the app; continuing without it")
        self._supported = False
        return None

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:
            self._error = exc
            if self._mode == "on":
                log.error("exception in lifespan", exc_info=exc)
            else:
                log.debug("exception in lifespan (treated as unsupported)", exc_info=exc)
