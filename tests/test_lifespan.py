"""ASGI lifespan: startup/shutdown once each, state copied into every request, the three
``--lifespan`` modes, and failing startups that stop the server with exit code 1."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx
import pytest

from tests.apps import basic
from tests.apps.basic import Receive, Scope, Send
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import running_server


class CountingApp:
    """Counts lifespan events and keeps every request's ``state`` for inspection."""

    def __init__(self) -> None:
        self.startups = 0
        self.shutdowns = 0
        self.lifespan_state: dict[str, Any] | None = None
        self.request_states: list[dict[str, Any] | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        state = scope.get("state")
        self.request_states.append(state)
        report: dict[str, Any] = {"has_state": state is not None}
        if state is not None:
            report["db"] = state.get("db")
            report["leaked"] = state.get("per_request")
            # Writes to the top level stay in this request; the list is shared (shallow copy).
            state["per_request"] = scope["path"]
            state["paths"].append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(report).encode()})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startups += 1
                scope["state"].update(db="connected", paths=[])
                self.lifespan_state = scope["state"]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdowns += 1
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_and_shutdown_once_and_state_in_every_request(mode: str) -> None:
    app = CountingApp()
    with running_server(app, lifespan=mode) as server, httpx.Client(base_url=server.url) as client:
        assert app.startups == 1 and app.shutdowns == 0
        reports = [client.get(f"/r{number}").json() for number in range(3)]
    assert app.startups == 1 and app.shutdowns == 1
    assert all(report == {"has_state": True, "db": "connected", "leaked": None} for report in reports)
    lifespan_state = app.lifespan_state
    assert lifespan_state is not None
    assert "per_request" not in lifespan_state
    assert lifespan_state["paths"] == ["/r0", "/r1", "/r2"]
    states = app.request_states
    assert len({id(state) for state in states}) == 3
    assert all(state is not lifespan_state and state["paths"] is lifespan_state["paths"] for state in states if state)


def test_lifespan_off_sends_nothing_and_no_state() -> None:
    app = CountingApp()
    with running_server(app, lifespan="off") as server:
        assert httpx.get(server.url).json() == {"has_state": False}
    assert app.startups == 0 and app.shutdowns == 0


@pytest.mark.parametrize("target", [basic.django_like, basic.lifespan_raises])
def test_auto_serves_app_that_raises_on_lifespan(target: Any) -> None:
    with running_server(target, lifespan="auto") as server:
        report = httpx.get(f"{server.url}/page").json()
    assert report["path"] == "/page"
    assert report["state"] is None


def test_on_refuses_app_that_raises_on_lifespan() -> None:
    with pytest.raises(RuntimeError, match="exited during start-up with code 1"):
        with running_server(basic.django_like, lifespan="on"):
            pass


def test_cli_lifespan_runs_once_and_state_reaches_requests() -> None:
    with gateway_process("--port", "0", "--lifespan", "on", "tests.apps.basic:app") as server:
        with httpx.Client(base_url=server.url) as client:
            states = [client.get(f"/{number}").json()["state"] for number in range(2)]
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert states == [{"started_by": "basic.app", "items": ["shared"]}] * 2
    assert server.stderr.count("app: lifespan startup") == 1
    assert server.stderr.count("app: lifespan shutdown") == 1


@pytest.mark.parametrize(
    ("mode", "target", "message"),
    [
        ("on", "lifespan_failed", "application startup failed: database unreachable at startup"),
        ("auto", "lifespan_failed", "application startup failed: database unreachable at startup"),
        ("on", "lifespan_raises", "RuntimeError: cache warm-up exploded"),
        ("on", "django_like", "ValueError: Django can only handle ASGI/HTTP connections, not lifespan."),
    ],
)
def test_cli_failed_startup_exits_1_with_the_apps_message(mode: str, target: str, message: str) -> None:
    result = run_gateway("--port", "0", "--lifespan", mode, f"tests.apps.basic:{target}")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "serving" not in result.stderr


def test_cli_lifespan_off_ignores_a_failing_startup() -> None:
    with gateway_process("--port", "0", "--lifespan", "off", "tests.apps.basic:lifespan_failed") as server:
        assert httpx.get(server.url).json()["state"] is None


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_cli_shutdown_exception_is_logged_and_exit_is_0(mode: str) -> None:
    with gateway_process("--port", "0", "--lifespan", mode, "tests.apps.basic:shutdown_raises") as server:
        assert httpx.get(server.url).status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "application shutdown failed: RuntimeError: flushing the queue failed" in server.stderr
    assert "not supported" not in server.stderr
    assert "LifespanFailure" not in server.stderr
