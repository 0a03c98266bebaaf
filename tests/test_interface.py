"""ASGI 2 ("double-callable") apps: detection of every common app shape, the adapter, the
forced ``--interface`` values, and ASGI 2 apps served over real sockets (one process and
``--workers 2``)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.handlers.asgi import ASGIHandler
from websockets.sync.client import connect

from gateway.config import Config, ConfigError
from gateway.interface import ASGI2Adapter, InterfaceError, as_asgi3, choose_interface, detect_interface
from gateway.loader import AppLoadError, load_app
from tests.apps import asgi2, basic
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import running_server


async def coroutine_app(scope: Any, receive: Any, send: Any, greeting: str = "hi") -> None:
    """An ASGI 3 function with an extra keyword, for functools.partial."""


class AsyncCallable:
    """An ASGI 3 instance: ``async def __call__(self, scope, receive, send)``."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class SyncWrapper:
    """An ASGI 3 middleware whose plain ``__call__`` returns the wrapped app's coroutine."""

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        return coroutine_app(scope, receive, send)


class SyncASGI2Instance:
    """An ASGI 2 app as an instance whose plain ``__call__(scope)`` returns the per-scope one."""

    def __call__(self, scope: Any) -> asgi2.EchoApp:
        return asgi2.EchoApp(scope)


def django_handler() -> ASGIHandler:
    # Only the type's __call__ matters to detection; __init__ would need configured settings.
    handler: ASGIHandler = object.__new__(ASGIHandler)
    return handler


ASGI3_SHAPES: dict[str, Callable[[], object]] = {
    "coroutine function": lambda: coroutine_app,
    "functools.partial of a coroutine function": lambda: functools.partial(coroutine_app, greeting="hello"),
    "instance with async __call__": AsyncCallable,
    "Django ASGIHandler": django_handler,
    "Channels ProtocolTypeRouter": lambda: ProtocolTypeRouter({"http": coroutine_app}),
    "Channels URLRouter": lambda: URLRouter([]),
    "plain __call__(scope, receive, send)": SyncWrapper,
    "signature-less builtin": lambda: print,
    "the adapter itself": lambda: ASGI2Adapter(asgi2.EchoApp),
}
ASGI2_SHAPES: dict[str, Callable[[], object]] = {
    "class with async __call__(receive, send)": lambda: asgi2.EchoApp,
    "function of one argument": lambda: asgi2.make_instance,
    "lambda of one argument": lambda: lambda scope: asgi2.EchoApp(scope),
    "functools.partial of a class": lambda: functools.partial(asgi2.EchoApp),
    "instance with plain __call__(scope)": SyncASGI2Instance,
}


@pytest.mark.parametrize("shape", list(ASGI3_SHAPES))
def test_asgi3_shapes_are_detected_as_asgi3(shape: str) -> None:
    app = ASGI3_SHAPES[shape]()
    assert detect_interface(app) == "asgi3"
    assert as_asgi3(app, "auto") is app


@pytest.mark.parametrize("shape", list(ASGI2_SHAPES))
def test_asgi2_shapes_are_detected_and_wrapped_once(shape: str) -> None:
    app = ASGI2_SHAPES[shape]()
    assert detect_interface(app) == "asgi2"
    wrapped = as_asgi3(app, "auto")
    assert isinstance(wrapped, ASGI2Adapter)
    assert wrapped.application is app
    # Wrapping is idempotent, whatever the mode: the loader checks, the Server wraps.
    assert as_asgi3(wrapped, "auto") is wrapped
    assert as_asgi3(wrapped, "asgi2") is wrapped


def test_adapter_creates_one_instance_per_scope_and_awaits_it() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = as_asgi3(asgi2.EchoApp, "auto")
    for path in ("/one", "/two"):
        asyncio.run(app({"type": "http", "path": path}, receive, send))
    reports = [json.loads(message["body"]) for message in sent if message["type"] == "http.response.body"]
    assert [report["path"] for report in reports] == ["/one", "/two"]
    assert reports[1]["serial"] == reports[0]["serial"] + 1


def test_forced_interface_is_used_as_given() -> None:
    # A coroutine function of one argument is nobody's idea of ASGI 3, but asgi2 is a choice.
    assert choose_interface(asgi2.make_instance, "asgi2") == "asgi2"
    assert choose_interface(coroutine_app, "asgi3") == "asgi3"
    assert isinstance(as_asgi3(SyncWrapper(), "asgi3"), SyncWrapper)


@pytest.mark.parametrize(
    ("app", "mode", "message"),
    [
        (asgi2.EchoApp, "asgi3", "--interface asgi3: the app (EchoApp) cannot be called with 3 positional arguments"),
        (asgi2.make_instance, "asgi3", "is it ASGI 2? (try --interface asgi2 or auto)"),
        (coroutine_app, "asgi2", "--interface asgi2: the app (coroutine_app) cannot be called with 1 positional"),
        (42, "asgi3", "the app (int instance) is not callable"),
        (None, "auto", "the app (NoneType instance) is not callable"),
    ],
)
def test_impossible_interfaces_are_one_line_errors(app: object, mode: Any, message: str) -> None:
    with pytest.raises(InterfaceError) as caught:
        choose_interface(app, mode)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_loader_names_the_target_in_interface_errors() -> None:
    assert load_app("tests.apps.asgi2:EchoApp", interface="asgi2") is asgi2.EchoApp
    with pytest.raises(AppLoadError, match=r"^'tests.apps.asgi2:EchoApp': --interface asgi3: the app \(EchoApp\)"):
        load_app("tests.apps.asgi2:EchoApp", interface="asgi3")


def test_config_checks_the_interface() -> None:
    assert Config().interface == "auto"
    with pytest.raises(ConfigError, match="--interface 'asgi4': choose auto, asgi3 or asgi2"):
        Config(interface="asgi4")  # type: ignore[arg-type]


# -- over real sockets ----------------------------------------------------------------------


@pytest.mark.parametrize("app", [asgi2.EchoApp, asgi2.make_instance], ids=["class", "function"])
def test_asgi2_app_serves_http_websocket_and_lifespan(app: object) -> None:
    with running_server(app) as server:
        first = httpx.get(f"{server.url}/hello").json()
        second = httpx.get(f"{server.url}/again").json()
        with connect(f"ws://{server.host}:{server.port}/ws", open_timeout=5) as websocket:
            websocket.send("ping")
            reply = websocket.recv(timeout=5)
    assert first["path"] == "/hello" and second["path"] == "/again"
    assert first["state"] == {"started_by": "asgi2.EchoApp"}
    # One instance for lifespan, one per request: the adapter never reuses one.
    assert second["serial"] == first["serial"] + 1
    assert reply == "asgi2 echo: ping"


def test_asgi3_app_is_unchanged_by_the_default() -> None:
    with running_server(basic.app, interface="auto") as server:
        assert server.server.context.app is basic.app
        assert httpx.get(f"{server.url}/x").json()["path"] == "/x"


def test_cli_detects_asgi2_and_logs_the_choice() -> None:
    args = ("--port", "0", "--log-level", "debug", "tests.apps.asgi2:EchoApp")
    with gateway_process(*args) as server:
        assert httpx.get(f"{server.url}/cli").json()["interface"] == "asgi2"
        server.wait_for(r"\[DEBUG\] ASGI interface: EchoApp is ASGI 2 \(detected\); serving it through an ASGI 3")
    with gateway_process("--port", "0", "--log-level", "debug", "tests.apps.basic:app") as server:
        server.wait_for(r"\[DEBUG\] ASGI interface: app is ASGI 3 \(detected\)")


def test_cli_forced_interfaces() -> None:
    with gateway_process("--port", "0", "--interface", "asgi2", "tests.apps.asgi2:make_instance") as server:
        assert httpx.get(f"{server.url}/forced").json()["path"] == "/forced"
    result = run_gateway("--interface", "asgi3", "tests.apps.asgi2:EchoApp")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "asgigw: error: 'tests.apps.asgi2:EchoApp': --interface asgi3: the app (EchoApp) cannot be called with"
        " 3 positional arguments, as ASGI 3 calls it; is it ASGI 2? (try --interface asgi2 or auto)"
    ]
    result = run_gateway("--interface", "asgi3", "tests.apps.basic:not_callable")
    assert result.returncode == 2
    assert result.stderr.startswith("asgigw: error: 'tests.apps.basic:not_callable' is not an ASGI application")
    assert len(result.stderr.splitlines()) == 1


def test_asgi2_app_with_two_workers() -> None:
    with gateway_process("--port", "0", "--workers", "2", "tests.apps.asgi2:EchoApp") as server:
        report = httpx.get(f"{server.url}/workers").json()
        with connect(server.url.replace("http", "ws", 1) + "/ws", open_timeout=5) as websocket:
            websocket.send("from a worker")
            assert websocket.recv(timeout=5) == "asgi2 echo: from a worker"
    assert report["path"] == "/workers"
    assert report["state"] == {"started_by": "asgi2.EchoApp"}
    assert report["pid"] != server.process.pid


def test_forced_asgi3_on_an_asgi2_app_fails_once_with_two_workers() -> None:
    result = run_gateway("--workers", "2", "--interface", "asgi3", "tests.apps.asgi2:EchoApp", timeout=30)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "asgigw: error:" in line]
    assert len(errors) == 1, result.stderr
    assert "--interface asgi3: the app (EchoApp) cannot be called with 3 positional arguments" in errors[0]
