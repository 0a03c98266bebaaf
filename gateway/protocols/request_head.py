"""Request-smuggling defences for HTTP/1.1 request heads, stricter than h11.

h11 is deliberately lenient in places where RFC 9112 allows a recipient to be (it unfolds
obsolete line folding, accepts bare LF line endings, merges repeated equal Content-Length
values, parses any ``HTTP/x.y``). When a gateway and the servers behind or in front of it
disagree on where a message ends, requests can be smuggled (RFC 9112 §11.2), so asgigw
rejects every ambiguous head before h11 parses it. The checks run on the raw head bytes
with C-speed ``bytes`` methods; they cost a few microseconds per request.
"""

from __future__ import annotations


class InvalidRequestHead(Exception):
    """The request head is rejected; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_SUPPORTED_VERSIONS = (b" HTTP/1.1", b" HTTP/1.0")
# What a head may contain: HTAB, CR, LF, visible ASCII, SP and obs-text. One ``translate``
# with this table lower-cases the head and turns every other byte (a control character:
# NUL, \x01, DEL...) into NUL, so one pass both finds those and gives the lower-case copy
# the field checks read (a table given in full costs nothing to build; a delete set does).
_ALLOWED = frozenset([0x09, 0x0A, 0x0D, *range(0x20, 0x7F), *range(0x80, 0x100)])
_LOWER_OR_NUL = bytes((byte | 0x20 if 0x41 <= byte <= 0x5A else byte) if byte in _ALLOWED else 0 for byte in range(256))


def find_head_end(buffer: bytes) -> int:
    """Index just past the blank line that ends the head, or -1 if it has not arrived.

    Raises :class:`InvalidRequestHead` on a bare LF: RFC 9112 §2.2 lets a recipient accept
    one, but a front-end that does not would see a different message boundary.
    """
    end = buffer.find(b"\r\n\r\n")
    head = buffer if end < 0 else buffer[: end + 4]
    if head.count(b"\n") != head.count(b"\r\n"):
        raise InvalidRequestHead(400, "bare LF line ending in request head")
    return -1 if end < 0 else end + 4


def check_request_head(head: bytes) -> None:
    """Reject heads that h11 would accept but that are ambiguous on the wire.

    ``head`` runs from the request line to the blank line inclusive, with CRLF endings
    (``find_head_end`` has checked that).
    """
    line_end = head.find(b"\r\n")
    request_line = head[:line_end]
    if not request_line.endswith(_SUPPORTED_VERSIONS):
        if request_line[-9:-3] == b" HTTP/" or request_line[-8:-2] == b"HTTP/":
            raise InvalidRequestHead(505, "HTTP version not supported")
        raise InvalidRequestHead(400, "malformed request line")
    # RFC 9112 §3: method SP request-target SP HTTP-version, single spaces (llhttp would
    # take several; h11 does not).
    if request_line.count(b" ") != 2 or request_line.startswith(b" "):
        raise InvalidRequestHead(400, "malformed request line")
    # RFC 9112 §5.2: obsolete line folding; a server must reject it or replace it with SP.
    if b"\r\n " in head or b"\r\n\t" in head:
        raise InvalidRequestHead(400, "obsolete line folding in request head")
    lowered = head.translate(_LOWER_OR_NUL)
    # RFC 9110 §5.5: control characters in a field value are invalid; h11 lets all but NUL
    # through, and a proxy in front may cut or keep them differently (RFC 9112 §11.2).
    if b"\x00" in lowered:
        raise InvalidRequestHead(400, "control character in request head")
    content_lengths = lowered.count(b"\r\ncontent-length:")
    if content_lengths:
        if content_lengths > 1:
            raise InvalidRequestHead(400, "several Content-Length fields")
        start = lowered.find(b"\r\ncontent-length:") + 17
        value = head[start : head.find(b"\r\n", start)].strip(b" \t")
        # RFC 9112 §6.3 (5): a list of lengths or a non-digit value is unrecoverable.
        if not value.isdigit():
            raise InvalidRequestHead(400, "Content-Length is not a single number")
        if b"\r\ntransfer-encoding:" in lowered:
            # RFC 9112 §6.1: a message with both may be an attempt at request smuggling.
            raise InvalidRequestHead(400, "both Content-Length and Transfer-Encoding")
    if b"\r\ntransfer-encoding:" in lowered:
        if lowered.count(b"\r\ntransfer-encoding:") > 1:
            raise InvalidRequestHead(501, "several Transfer-Encoding fields")
        start = lowered.find(b"\r\ntransfer-encoding:") + 20
        value = lowered[start : lowered.find(b"\r\n", start)].strip(b" \t")
        # RFC 9112 §6.3 (4): chunked must be the final coding; asgigw decodes no others.
        if value != b"chunked":
            raise InvalidRequestHead(501, "only Transfer-Encoding: chunked is supported")
