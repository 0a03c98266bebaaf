"""The ASGI application of the chat example: ``asgigw chat.asgi:application`` (from examples/chat).

HTTP goes to Django; WebSocket connections go through the origin check (the Origin header
must name one of ``ALLOWED_HOSTS``), the session/auth middleware (``scope["user"]``) and the
URL router to the chat consumer.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat.settings")
# Set Django up (apps, models) before anything below imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from rooms.routing import websocket_urlpatterns  # noqa: E402

# With DEBUG on, serve /static/ from the apps' static folders the way ``runserver`` does, so
# that the example works without collectstatic. In production, ``collectstatic`` and let
# asgigw serve STATIC_ROOT (docs/django.md).
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
