"""Per-request state of the HTTP/1.1 adapter: one :class:`RequestCycle` per request.

A fresh object per request, rather than connection fields reset one by one, means nothing
of one exchange can leak into the next: the adapter drops the cycle when both the request
and its response are complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.protocols.http1_response import ResponseWriter

if TYPE_CHECKING:
    from gateway.protocols.common import Stream
    from gateway.protocols.http1_parser import HTTP1Parser


class RequestCycle:
    """One request and its response: created when a head arrives, dropped when both are done."""

    __slots__ = (
        "body_allowed",
        "body_size",
        "discarded",
        "expect_continue",
        "http10",
        "keep_alive",
        "message_done",
        "parser",
        "stream",
        "writer",
    )

    def __init__(self, parser: HTTP1Parser) -> None:
        self.parser = parser
        self.stream: Stream | None = None
        self.http10 = False
        self.keep_alive = True
        self.body_allowed = True
        self.expect_continue = False
        # The parser reported the end of the request message.
        self.message_done = False
        self.body_size = 0
        # Body bytes read and dropped after the response (the app did not read them).
        self.discarded = 0
        self.writer = ResponseWriter()
