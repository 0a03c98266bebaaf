"""The HTTP/1.1 parser seam: one small interface, an h11 backend and an httptools backend.

The adapter (``http1.py``) finds and checks each request head itself
(``request_head.py``), then gives a fresh parser the bytes of that one message: the parser
reports the head, body data and the end of the message to its :class:`ParserSink`, and hands
back the bytes that follow the message (a pipelined request, or WebSocket frames), which it
never parses. Keep-alive, pipelining, 100-continue, upgrades, limits, timeouts and
backpressure are decided above the seam, once, so both backends behave the same.

h11 is pure Python and always present; httptools (llhttp, the ``fast`` extra) is chosen by
``--http1-parser`` (gateway/accelerators.py). Nothing here touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import h11

from gateway.accelerators import HTTP1ParserName
from gateway.events import Request

_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
# The stream id of every HTTP/1.1 request (HTTP/2 numbers its own).
STREAM_ID = 1


class ParseError(Exception):
    """The message is malformed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ParserSink(Protocol):
    """Where a parser reports one message (the HTTP/1.1 adapter)."""

    def on_head(self, request: Request) -> None:
        """The request head has been parsed: the ``Request`` event its stream will get.

        Field names are lower-case, as ASGI wants them.
        """

    def on_body(self, data: bytes) -> None:
        """A piece of the request body (chunked framing already removed)."""

    def on_message_end(self) -> None:
        """The request, body included, is complete."""


class HTTP1Parser(Protocol):
    """Parses one request message: the head first, then its body."""

    def feed(self, data: bytes) -> bytes | None:
        """Parse ``data``; None while the message goes on, else the bytes after its end.

        Raises :class:`ParseError` when the message is malformed.
        """

    def reuse(self) -> bool:
        """After a complete message: get ready for the next one on the same connection.

        False when a fresh parser is needed instead.
        """


class H11Parser:
    """The pure-Python backend: h11 in server mode, one ``h11.Connection`` per message.

    Responses are written by ``http1_response.py``, so h11's own side never advances; a
    fresh connection per request (about a microsecond) starts each message clean.
    """

    __slots__ = ("_connection", "_sink")

    def __init__(self, sink: ParserSink, max_head_size: int) -> None:
        self._sink = sink
        self._connection = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)

    def feed(self, data: bytes) -> bytes | None:
        connection = self._connection
        connection.receive_data(data)
        sink = self._sink
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise ParseError(exc.error_status_hint, str(exc)) from None
            if isinstance(event, h11.Data):
                sink.on_body(event.data)
            elif isinstance(event, h11.Request):
                # raw_items() is h11's public, fast view; ASGI wants lower-case names.
                headers = [(name.lower(), value) for name, value in event.headers.raw_items()]
                version = _HTTP_VERSIONS[event.http_version]
                sink.on_head(Request(STREAM_ID, event.method, event.target, version, headers))
            elif isinstance(event, h11.EndOfMessage):
                sink.on_message_end()
                # h11 pauses after a message; what it holds belongs to the next one.
                return connection.trailing_data[0]
            else:  # NEED_DATA (the adapter handles end of input itself)
                return None

    def reuse(self) -> bool:
        # h11 would need its own (unused) response side to finish first: start afresh.
        return False


def parser_backend(name: HTTP1ParserName) -> Callable[[ParserSink, int], HTTP1Parser]:
    """The parser class for ``--http1-parser`` (resolved to ``h11`` or ``httptools``)."""
    if name == "httptools":
        from gateway.protocols.http1_httptools import HttptoolsParser  # only with the fast extra

        return HttptoolsParser
    return H11Parser
