"""ASGI 2 ("double-callable") applications, detected once and served through an ASGI 3 adapter.

The ASGI spec ("Legacy Applications") describes an older form: ``app(scope)`` returns an
instance, and ``await instance(receive, send)`` runs the connection. Everything below the
application layer speaks only ASGI 3, ``await app(scope, receive, send)``, so an ASGI 2 app
is wrapped once, when the server is created, in :class:`ASGI2Adapter`.

Detection with ``--interface auto`` errs towards ASGI 3, the only form asgigw accepted
before: an app is ASGI 2 only when it is a class, or a non-coroutine callable that takes
exactly one positional argument. Coroutine functions, ``functools.partial`` of them, and
instances whose ``__call__`` is a coroutine function (Django's ``ASGIHandler``, Channels'
``ProtocolTypeRouter``) are ASGI 3, and so is anything whose signature cannot be read.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Literal

from gateway.asgi import ASGIApp, Receive, Scope, Send
from gateway.config import ConfigError, InterfaceMode

Interface = Literal["asgi3", "asgi2"]
log = logging.getLogger("gateway.error")

# How many positional arguments each form is called with.
_ARGUMENTS: dict[Interface, int] = {"asgi3": 3, "asgi2": 1}
_NAMES: dict[Interface, str] = {"asgi3": "ASGI 3", "asgi2": "ASGI 2"}


class InterfaceError(ConfigError):
    """The app cannot be called the way ``--interface`` says; the message is one line."""


class ASGI2Adapter:
    """The ASGI 3 form of an ASGI 2 application: one instance of it per connection scope."""

    __slots__ = ("application",)

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Create the app's instance for this scope, then run it (ASGI spec, Legacy Applications)."""
        instance = self.application(scope)
        await instance(receive, send)

    def __repr__(self) -> str:
        return f"ASGI2Adapter({self.application!r})"


def describe(app: object) -> str:
    """A short name for log lines and errors: the qualified name, or the type of an instance."""
    name = getattr(app, "__qualname__", None)
    if isinstance(name, str):
        return name
    return f"{type(app).__qualname__} instance"


def _is_coroutine_callable(app: object) -> bool:
    # inspect.iscoroutinefunction sees through functools.partial and bound methods, and
    # honours inspect.markcoroutinefunction (Python 3.12+).
    if inspect.iscoroutinefunction(app):
        return True
    # The type's __call__, as that is what calling an instance runs.
    return inspect.iscoroutinefunction(type(app).__call__)


def _binds(app: object, arguments: int) -> bool | None:
    """Whether ``app``'s signature accepts that many positional arguments; None if it has none."""
    try:
        signature = inspect.signature(app)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins and C extensions may have no signature
        return None
    try:
        signature.bind(*[None] * arguments)
    except TypeError:
        return False
    return True


def detect_interface(app: object) -> Interface:
    """Which form ``app`` is written in (``--interface auto``); see the module docstring."""
    if isinstance(app, ASGI2Adapter):
        return "asgi3"
    # Before the coroutine test: an ASGI 2 class often has ``async def __call__(self,
    # receive, send)``, and the class object itself is the app.
    if isinstance(app, type):
        return "asgi2"
    if _is_coroutine_callable(app):
        return "asgi3"
    # A plain callable that returns an awaitable (a sync middleware wrapper) is ASGI 3 if
    # it takes three arguments; ASGI 2 only when one positional argument is all it takes.
    if _binds(app, 1) and _binds(app, 3) is False:
        return "asgi2"
    return "asgi3"


def choose_interface(app: object, mode: InterfaceMode) -> Interface:
    """The form to serve ``app`` as: detected (``auto``) or forced; InterfaceError if impossible."""
    if not callable(app):
        raise InterfaceError(f"the app ({describe(app)}) is not callable")
    if mode == "auto":
        return detect_interface(app)
    if isinstance(app, ASGI2Adapter):  # already the ASGI 3 form of an ASGI 2 app
        return "asgi3"
    arguments = _ARGUMENTS[mode]
    if _binds(app, arguments) is False:  # a signature that cannot be read gets the benefit of the doubt
        other: Interface = "asgi2" if mode == "asgi3" else "asgi3"
        raise InterfaceError(
            f"--interface {mode}: the app ({describe(app)}) cannot be called with {arguments} positional"
            f" argument{'s' if arguments > 1 else ''}, as {_NAMES[mode]} calls it; is it {_NAMES[other]}?"
            f" (try --interface {other} or auto)"
        )
    return mode


def as_asgi3(app: Any, mode: InterfaceMode) -> ASGIApp:
    """``app`` as an ASGI 3 callable, wrapping an ASGI 2 app once; InterfaceError if impossible."""
    interface = choose_interface(app, mode)
    if isinstance(app, ASGI2Adapter):
        return app
    how = "detected" if mode == "auto" else "forced by --interface"
    if interface == "asgi2":
        log.debug("ASGI interface: %s is ASGI 2 (%s); serving it through an ASGI 3 adapter", describe(app), how)
        return ASGI2Adapter(app)
    log.debug("ASGI interface: %s is ASGI 3 (%s)", describe(app), how)
    app3: ASGIApp = app
    return app3
