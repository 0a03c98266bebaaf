"""The Django app configuration of ``gateway.django``."""

from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):  # type: ignore[misc]  # Django ships no type stubs
    """Provides the ``runserver`` command; no models, no URLs."""

    name = "gateway.django"
    # The default label would be "django", which reads as if it were Django itself.
    label = "asgigw"
    verbose_name = "asgigw development server"

    def ready(self) -> None:
        """Register the INSTALLED_APPS checks."""
        from django.core import checks

        from gateway.django.checks import check_app_order, check_daphne_installed

        checks.register(check_app_order)
        checks.register(check_daphne_installed)
