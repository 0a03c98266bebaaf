"""Importing the application from ``module:attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from gateway.config import InterfaceMode
from gateway.interface import InterfaceError, choose_interface


class AppLoadError(Exception):
    """The app cannot be imported; the message is one line for the user."""


def split_target(target: str) -> tuple[str, str]:
    """``module:attr`` -> ``(module, attr)``, or AppLoadError; imports nothing.

    The workers' supervisor checks the form here and leaves the import to its workers.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"APP must look like 'module:attribute' (e.g. proj.asgi:application), got {target!r}")
    return module_name, attribute


def load_app(
    target: str, *, factory: bool = False, app_dir: str | None = ".", interface: InterfaceMode = "auto"
) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted), calling it first if ``factory``.

    ``app_dir`` goes at the front of ``sys.path`` so ``proj.asgi`` is found from the project
    folder, as Daphne and Uvicorn users expect. The app is checked against ``interface``
    here, where the error can name ``target``; the Server wraps an ASGI 2 app later, since
    apps also reach it without this function (gateway/interface.py).
    """
    module_name, attribute = split_target(target)
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"could not import module {module_name!r} (looked in {app_dir or 'sys.path'})") from None
        raise AppLoadError(f"error importing {module_name!r}: {exc}") from None
    except ImportError as exc:
        raise AppLoadError(f"error importing {module_name!r}: {exc}") from None
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppLoadError(f"attribute {attribute!r} not found in module {module_name!r}") from None
    if factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {target!r} is not callable")
        app = app()
    if not callable(app):
        raise AppLoadError(f"{target!r} is not an ASGI application (not callable); did you mean --factory?")
    try:
        choose_interface(app, interface)
    except InterfaceError as exc:
        raise AppLoadError(f"{target!r}: {exc}") from None
    return app
