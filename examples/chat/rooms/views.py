"""The chat pages, and small demo views that show what a request looks like behind asgigw.

The demo views (under /demo/) exist for the end-to-end tests and for trying things out:
a streamed response, an error page, an upload checksum, the request's scheme and client
address, and a slow response for graceful-shutdown experiments.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .consumers import post_message
from .forms import MessageForm, RoomForm
from .models import Message, Room

RECENT_MESSAGES = 50
STREAM_PIECES = 5
STREAM_PAUSE = 0.2  # seconds between streamed pieces
SLOW_MAX_SECONDS = 30.0
UPLOAD_READ_SIZE = 64 * 1024


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """The room list and the form that creates a room (then goes to it)."""
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        room = form.save()
        return redirect("rooms:room", room_name=room.name)
    return render(request, "rooms/index.html", {"rooms": Room.objects.all(), "form": form})


@require_GET
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """A room's page: the latest messages; its JavaScript joins the room's WebSocket."""
    recent = list(Message.objects.filter(room__name=room_name).order_by("-created", "-id")[:RECENT_MESSAGES])
    recent.reverse()
    context = {"room_name": room_name, "messages_so_far": recent, "form": MessageForm()}
    return render(request, "rooms/room.html", context)


@require_POST
async def post(request: HttpRequest, room_name: str) -> HttpResponse:
    """Post a message with an ordinary form; it reaches the room's WebSockets too."""
    form = MessageForm(request.POST)
    if not form.is_valid():
        return HttpResponse("author and text are required\n", status=400, content_type="text/plain")
    await post_message(room_name, form.cleaned_data["author"], form.cleaned_data["text"])
    return redirect("rooms:room", room_name=room_name)


async def _pieces() -> AsyncIterator[str]:
    for number in range(1, STREAM_PIECES + 1):
        yield f"piece {number} of {STREAM_PIECES}\n"
        if number < STREAM_PIECES:
            await asyncio.sleep(STREAM_PAUSE)


@require_GET
async def stream(request: HttpRequest) -> StreamingHttpResponse:
    """A response sent in pieces as they are produced (an async iterator: no thread held)."""
    return StreamingHttpResponse(_pieces(), content_type="text/plain; charset=utf-8")


def fail(request: HttpRequest) -> HttpResponse:
    """Raise, to show the 500 page (the traceback page when DEBUG is on)."""
    raise RuntimeError("this view fails on purpose")


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    """The size and SHA-256 of the request body, read in chunks (so no size setting limits it)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := request.read(UPLOAD_READ_SIZE):
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"size": size, "sha256": digest.hexdigest()})


def whoami(request: HttpRequest) -> JsonResponse:
    """What Django sees of the connection: asgigw passes the real scheme and client address."""
    scope = getattr(request, "scope", {})
    return JsonResponse(
        {
            "is_secure": request.is_secure(),
            "scheme": request.scheme,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "host": request.get_host(),
            "http_version": scope.get("http_version"),
        }
    )


async def _sleeping(seconds: float) -> AsyncIterator[str]:
    yield f"sleeping {seconds:g} s\n"
    await asyncio.sleep(seconds)
    yield f"slept {seconds:g} s\n"


@require_GET
async def slow(request: HttpRequest) -> HttpResponse:
    """Finish ``?seconds=`` seconds (at most 30) after a first line: a request in flight.

    The first line goes out at once, so a client (or a test) knows that the request has
    reached the app before, say, it stops the server; the second comes at the end.
    """
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        return HttpResponse("seconds must be a number\n", status=400, content_type="text/plain")
    seconds = min(max(seconds, 0.0), SLOW_MAX_SECONDS)
    return StreamingHttpResponse(_sleeping(seconds), content_type="text/plain; charset=utf-8")
