"""The httptools backend of the HTTP/1.1 parser seam (llhttp, from the ``fast`` extra).

llhttp parses everything it is given, pipelined messages included, and cannot pause, so
this backend gives it one message at a time: the head (the adapter has found and checked it,
``request_head.py``), then exactly ``Content-Length`` bytes, or for a chunked body pieces
that end at each blank line, since the last chunk and its trailers always end in CRLF CRLF
(RFC 9112 §7.1). What follows the message is handed back unparsed.

Strictness stays h11's: the adapter's head checks run first, and when llhttp rejects a head
h11 gives the verdict (the status, or serving it when h11 accepts it, e.g. an extension
method llhttp does not know), so both backends answer every head the same way.
"""

from __future__ import annotations

import httptools

from gateway.events import Headers, Request
from gateway.protocols.http1_parser import STREAM_ID, H11Parser, HTTP1Parser, ParseError, ParserSink

_BLANK_LINE = b"\r\n\r\n"


class HttptoolsParser:
    """One request message through ``httptools.HttpRequestParser``."""

    __slots__ = (
        "_body_remaining",
        "_chunked",
        "_delegate",
        "_done",
        "_feeding_head",
        "_fields",
        "_head_reported",
        "_max_head_size",
        "_parser",
        "_reusable",
        "_sink",
        "_tail",
        "_url",
        "_version",
    )

    def __init__(self, sink: ParserSink, max_head_size: int) -> None:
        self._sink = sink
        self._max_head_size = max_head_size
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._version = "1.1"
        self._fields: Headers = []
        self._head_reported = False
        self._done = False
        # False once llhttp stopped at an upgrade or h11 took over: start afresh next time.
        self._reusable = True
        self._feeding_head = False
        self._chunked = False
        # Content-Length bytes still to come (-1: chunked or not yet known).
        self._body_remaining = -1
        # The last bytes fed while chunked, to find a blank line split across reads.
        self._tail = b""
        # h11, when it gives the verdict on a head llhttp refused.
        self._delegate: HTTP1Parser | None = None

    def reuse(self) -> bool:
        """llhttp starts the next message by itself after a complete keep-alive one.

        Not after an upgrade (llhttp stopped there), a head h11 judged, or a message
        llhttp would end the connection after; those get a fresh parser.
        """
        if not (self._done and self._reusable) or self._parser.should_upgrade():
            return False
        if not self._parser.should_keep_alive():
            return False
        self._url = b""
        self._fields = []
        self._head_reported = self._done = self._chunked = False
        self._body_remaining = -1
        self._tail = b""
        return True

    # -- llhttp callbacks (called by name) ----------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_reported:  # trailer fields are read and dropped, as with h11
            # h11 strips whitespace after a value (RFC 9110 §5.5 OWS); llhttp keeps it.
            self._fields.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers = self._fields
        length = -1
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = True
        self._body_remaining = -1 if self._chunked else max(length, 0)
        self._head_reported = True
        # The adapter checked that the request line ends in HTTP/1.1 or HTTP/1.0, and the
        # head starts the bytes being fed: its last digit says which (get_http_version()
        # formats a string each time, a third of a microsecond).
        self._sink.on_head(Request(STREAM_ID, parser.get_method(), self._url, self._version, headers))

    def on_body(self, body: bytes) -> None:
        self._sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._feeding_head and (self._chunked or self._body_remaining > 0):
            return  # llhttp skips an upgrade request's body; it is read after (_after_upgrade)
        self._done = True
        self._sink.on_message_end()

    # -- the seam ---------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes | None:
        if self._delegate is not None:
            return self._delegate.feed(data)
        if not self._head_reported:
            return self._feed_head(data)
        if self._chunked:
            return self._feed_chunked(data)
        return self._feed_length(data)

    def _feed_head(self, data: bytes) -> bytes | None:
        # The adapter gives the whole checked head in the first piece.
        end = data.find(_BLANK_LINE) + 4
        self._version = "1.0" if data[data.find(b"\r\n") - 1] == 0x30 else "1.1"
        self._feeding_head = True
        try:
            self._parser.feed_data(data[:end])
        except httptools.HttpParserUpgrade:
            self._feeding_head = self._reusable = False
            return self._after_upgrade(data[end:])
        except httptools.HttpParserError:
            self._feeding_head = False
            if self._head_reported:
                raise ParseError(400, "invalid request head") from None
            # llhttp refused the head: h11 decides, exactly as with --http1-parser h11.
            self._reusable = False
            self._delegate = H11Parser(self._sink, self._max_head_size)
            return self._delegate.feed(data)
        self._feeding_head = False
        if self._done:
            return data[end:]
        return self.feed(data[end:]) if len(data) > end else None

    def _after_upgrade(self, rest: bytes) -> bytes | None:
        """llhttp stops at the head of an upgrade request; a declared body is still read."""
        if self._done:
            return rest
        # llhttp skipped the body: parse it alone, behind a stand-in head with its framing.
        framing = b"transfer-encoding: chunked" if self._chunked else b"content-length: %d" % self._body_remaining
        self._parser = httptools.HttpRequestParser(_BodyOnly(self))
        self._parser.feed_data(b"POST / HTTP/1.1\r\nhost: x\r\n" + framing + _BLANK_LINE)
        return self.feed(rest) if rest else None

    def _feed_length(self, data: bytes) -> bytes | None:
        remaining = self._body_remaining
        piece = data if len(data) <= remaining else data[:remaining]
        self._body_remaining = remaining - len(piece)
        self._execute(piece)
        if self._done:
            return data[len(piece) :]
        return None

    def _feed_chunked(self, data: bytes) -> bytes | None:
        # A chunked message ends right after a blank line: feed up to each one in turn and
        # stop where llhttp says the message is complete.
        tail = self._tail
        window = tail + data
        fed = 0
        search = 0
        while True:
            found = window.find(_BLANK_LINE, search)
            if found < 0:
                break
            end = found + 4 - len(tail)
            search = found + 1
            if end <= fed:
                continue
            self._execute(data[fed:end])
            fed = end
            if self._done:
                return data[end:]
        if fed < len(data):
            self._execute(data[fed:])
        self._tail = window[-3:]
        return None

    def _execute(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ParseError(400, f"invalid request body: {exc}") from None


class _BodyOnly:
    """Callbacks of the parser that reads an upgrade request's body: only body and end count."""

    __slots__ = ("_owner",)

    def __init__(self, owner: HttptoolsParser) -> None:
        self._owner = owner

    def on_body(self, body: bytes) -> None:
        self._owner.on_body(body)

    def on_message_complete(self) -> None:
        self._owner.on_message_complete()
