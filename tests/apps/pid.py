"""An app that answers with the process id of the worker that served the request.

``/`` answers ``{"pid": ...}``; ``?block=S`` first holds this worker's event loop for ``S``
seconds (time.sleep), so concurrent connections have to be accepted by other workers.
``/slow?seconds=S`` is tests.apps.basic's slow response. Lifespan startup and shutdown are
printed to stderr with the pid. ``lifespan_failed`` fails its startup in every worker;
``fails_once_flagged`` fails it only while the file named by ``$ASGIGW_TEST_FAIL_FLAG``
exists, so the first workers start and their replacements do not.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tests.apps.basic import Receive, Scope, Send
from tests.apps.basic import app as basic_app


def _say(text: str) -> None:
    print(f"app: {text} (pid {os.getpid()})", file=sys.stderr, flush=True)


FAIL_FLAG = "ASGIGW_TEST_FAIL_FLAG"


async def _lifespan(receive: Receive, send: Send, fail: bool) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if fail:
        await send({"type": "lifespan.startup.failed", "message": "no database in this worker"})
        return
    _say("lifespan startup")
    await send({"type": "lifespan.startup.complete"})
    await receive()
    _say("lifespan shutdown")
    await send({"type": "lifespan.shutdown.complete"})


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"].endswith("/slow"):
        await basic_app(scope, receive, send)
        return
    query: dict[str, Any] = dict(part.partition("=")[::2] for part in scope["query_string"].decode().split("&") if part)
    if "block" in query:
        time.sleep(float(query["block"]))
    payload = json.dumps({"pid": os.getpid(), "http_version": scope["http_version"], "scheme": scope["scheme"]})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload.encode()})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with this process's pid; supports lifespan."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, fail=False)
        return
    await _answer(scope, receive, send)


async def lifespan_failed(scope: Scope, receive: Receive, send: Send) -> None:
    """Fails its lifespan startup in every worker."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, fail=True)
        return
    await _answer(scope, receive, send)


async def fails_once_flagged(scope: Scope, receive: Receive, send: Send) -> None:
    """Fails its lifespan startup while the file ``$ASGIGW_TEST_FAIL_FLAG`` exists."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, fail=os.path.exists(os.environ[FAIL_FLAG]))
        return
    await _answer(scope, receive, send)
