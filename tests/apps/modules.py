"""An app that reports which heavy optional modules its process has imported, and its pid."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

WATCHED = ("cryptography", "multiprocessing")


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``GET`` -> ``{"pid": ..., "cryptography": bool, ...}`` for the serving process."""
    if scope["type"] != "http":
        return
    report: dict[str, Any] = {name: name in sys.modules for name in WATCHED}
    report["pid"] = os.getpid()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(report).encode()})
