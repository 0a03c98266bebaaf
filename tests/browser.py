"""A small headless Chromium driver for end-to-end tests, over the Chrome DevTools Protocol.

:func:`chromium` starts ``chromium --headless`` in its own process group with a fresh
profile and ``--remote-debugging-port=0``, reads the port it chose from the profile's
``DevToolsActivePort`` file, and talks CDP to it with the ``websockets`` client (a test
dependency already): one browser-level WebSocket, tabs attached in "flatten" mode so that
each tab's commands carry a ``sessionId``. Every wait is bounded, and the whole process
group is killed when the ``async with`` block ends, whatever happened.

Only what the tests need: open a tab (:meth:`Browser.open`), evaluate JavaScript in it
(:meth:`Tab.evaluate`, promises awaited, results by value) and poll an expression until it
is truthy (:meth:`Tab.wait_for`). Trust is given to one server certificate by its SPKI hash
(:func:`spki_sha256`), so TLS is otherwise validated as usual and Chromium treats the
origin as secure (it uses HTTP/2 and WebSocket over HTTP/2 only on secure connections).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.client import ClientConnection, connect

START_TIMEOUT = 15.0
COMMAND_TIMEOUT = 10.0
FLAGS = [
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # loopback only, whatever the environment says
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_binary() -> str | None:
    """The ``chromium`` on PATH, or None (tests skip then)."""
    return shutil.which("chromium")


def spki_sha256(cert_pem: Path) -> str:
    """Base64 SHA-256 of the first certificate's SubjectPublicKeyInfo in ``cert_pem``, the
    form ``--ignore-certificate-errors-spki-list`` takes."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class CDPError(Exception):
    """A CDP command failed, or JavaScript threw."""


class Browser:
    """A CDP connection to the browser target; use :func:`chromium` to get one."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []  # every event, for failure messages
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                future = self._pending.pop(message.get("id", -1), None)
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                elif "method" in message:
                    self.events.append(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("the DevTools connection closed"))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> dict[str, Any]:
        """Send one command and return its ``result``; raise :class:`CDPError` on an error."""
        if self._reader.done():
            raise CDPError("the DevTools connection is closed")
        command_id = next(self._ids)
        command: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self.ws.send(json.dumps(command))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(command_id, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def open(self, url: str, scripts: bool = True) -> Tab:
        """A new tab on ``url`` (the navigation is started, not waited for); ``scripts=False``
        turns the page's JavaScript off (``Runtime.evaluate`` still works)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        tab = Tab(self, target["targetId"], attached["sessionId"])
        await tab.send("Runtime.enable")  # exceptions and console calls land in self.events
        if not scripts:
            await tab.send("Emulation.setScriptExecutionDisabled", {"value": True})
        navigated = await tab.send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise CDPError(f"navigating to {url}: {navigated['errorText']}")
        return tab

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.ws.close()


class Tab:
    """One page target, attached to the browser connection by a CDP session."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (a promise is awaited)."""
        reply = await self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"{expression!r} threw: {text}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; return that value or fail after ``timeout``.
        Errors while polling (the page still loading) count as falsy; the last one is reported."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = await self.evaluate(expression)
            except CDPError as exc:
                value, last = None, exc
            else:
                last = value
                if value:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression!r} not truthy after {timeout} s (last: {last!r})")
            await asyncio.sleep(interval)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill Chromium's whole process group (renderers, GPU, zygote) and reap the browser."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.asynccontextmanager
async def chromium(*extra_flags: str, binary: str | None = None) -> AsyncIterator[Browser]:
    """Start headless Chromium with a temporary profile; yield a :class:`Browser`."""
    executable = binary or chromium_binary()
    if executable is None:
        raise RuntimeError("no chromium binary")
    with tempfile.TemporaryDirectory(prefix="asgigw-chromium-") as profile:
        log = Path(profile) / "chromium.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile}", *extra_flags, "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        browser: Browser | None = None
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + START_TIMEOUT
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Chromium did not start its DevTools server:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            ws = await connect(
                f"ws://127.0.0.1:{port}{path}", proxy=None, max_size=None, open_timeout=START_TIMEOUT, close_timeout=1
            )
            browser = Browser(ws)
            yield browser
        finally:
            try:
                if browser is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(browser.close(), 2)
            finally:
                _stop(process)
