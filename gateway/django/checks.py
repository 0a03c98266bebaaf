"""A system check for the one way installing ``gateway.django`` silently does nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

ORDER_WARNING_ID = "asgigw.W001"


def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Warn when django.contrib.staticfiles comes first: its runserver would win over ours.

    Django takes a command from the first installed app that has it, so the project would
    keep Django's WSGI development server without HTTPS, HTTP/2 or WebSocket.
    """
    installed = [str(entry) for entry in settings.INSTALLED_APPS]
    ours = _position(installed, "gateway.django")
    staticfiles = _position(installed, "django.contrib.staticfiles")
    if ours is None or staticfiles is None or ours < staticfiles:
        return []
    return [
        checks.Warning(
            "gateway.django is listed after django.contrib.staticfiles in INSTALLED_APPS, so "
            "'manage.py runserver' is Django's server, not asgigw.",
            hint="Move 'gateway.django' above 'django.contrib.staticfiles' (first is simplest).",
            id=ORDER_WARNING_ID,
        )
    ]


def _position(installed: list[str], name: str) -> int | None:
    # An entry may also name the app's AppConfig class (gateway.django.apps.GatewayConfig).
    for index, entry in enumerate(installed):
        if entry == name or entry.startswith(f"{name}.apps."):
            return index
    return None
