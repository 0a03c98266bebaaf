"""System checks for the ways installing ``gateway.django`` silently does nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

ORDER_WARNING_ID = "asgigw.W001"
DAPHNE_WARNING_ID = "asgigw.W002"


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


def check_daphne_installed(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Warn when ``daphne`` is still an installed app: its own ``runserver`` competes with ours.

    Daphne's app exists only to replace ``runserver``; left in after moving to asgigw, it
    either wins (when listed first) or does nothing, and readers of the settings cannot tell.
    """
    installed = [str(entry) for entry in settings.INSTALLED_APPS]
    daphne = _position(installed, "daphne")
    if daphne is None:
        return []
    ours = _position(installed, "gateway.django")
    serves = "Daphne's" if ours is None or daphne < ours else "asgigw's"
    return [
        checks.Warning(
            f"'daphne' is in INSTALLED_APPS next to gateway.django; 'manage.py runserver' is {serves} server.",
            hint="Remove 'daphne' from INSTALLED_APPS: asgigw serves runserver, HTTPS, HTTP/2 and WebSockets.",
            id=DAPHNE_WARNING_ID,
        )
    ]


def _position(installed: list[str], name: str) -> int | None:
    # An entry may also name the app's AppConfig class (gateway.django.apps.GatewayConfig).
    for index, entry in enumerate(installed):
        if entry == name or entry.startswith(f"{name}.apps."):
            return index
    return None
