"""ASGI apps that the CLI, lifespan and shutdown tests import by ``module:attr`` from a subprocess."""
