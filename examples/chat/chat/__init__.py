"""The chat example's Django project package: settings, URLs and the ASGI application."""
