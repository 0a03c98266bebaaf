"""Settings for the chat example, steered by environment variables.

- ``DJANGO_DEBUG``: ``1``/``true``/``yes``/``on`` (the default here) or ``0``/``false``/``no``/``off``.
- ``DJANGO_SECRET_KEY``: required for a real deployment; a development key otherwise.
- ``DJANGO_ALLOWED_HOSTS``: comma-separated, default ``localhost,127.0.0.1,[::1]``. The
  WebSocket origin check (``AllowedHostsOriginValidator``) uses the same list.
- ``DJANGO_CSRF_TRUSTED_ORIGINS``: comma-separated extra origins for CSRF checks; same-origin
  requests need none, since asgigw reports the real scheme and host.
- ``CHAT_DATABASE``: path of the SQLite file, default ``examples/chat/db.sqlite3``.
- ``CHAT_STATIC_ROOT``: where ``collectstatic`` copies files, default ``examples/chat/staticfiles``.
- ``CHAT_REDIS_URL``: when set (e.g. ``redis://127.0.0.1:6379/0``), the channel layer is
  channels_redis on that server, so that several asgigw processes share groups; otherwise an
  in-memory layer that only works within one process.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, not {value!r}")


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _flag("DJANGO_DEBUG", default=True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-chat-example-development-key-do-not-deploy")
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list(
    "DJANGO_CSRF_TRUSTED_ORIGINS", "https://localhost:8000,https://127.0.0.1:8000,http://localhost:8000"
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rooms",
]
# The runserver integration of asgigw, when this asgigw has it: like daphne, it must come
# first so that its ``runserver`` command replaces Django's.
if importlib.util.find_spec("gateway") and importlib.util.find_spec("gateway.django"):
    INSTALLED_APPS.insert(0, "gateway.django")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chat.urls"
ASGI_APPLICATION = "chat.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CHAT_DATABASE") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("CHAT_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: redis-py 8 defaults to 5 s, which cuts channels_redis's
            # blocking reads and kills every consumer idle for 5 s (channels_redis#422).
            "CONFIG": {"hosts": [{"address": os.environ["CHAT_REDIS_URL"], "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("CHAT_STATIC_ROOT") or BASE_DIR / "staticfiles"
