"""The HTTP rules of static file serving, free of I/O: types, validators, conditions, ranges.

:mod:`gateway.static` finds and opens files; this module decides what to answer from the
request's fields and the file's size and modification time: the Content-Type, a strong
ETag, the preconditions of RFC 9110 §13 (in the order §13.2.2 fixes), If-Range (§13.1.5)
and a single byte range (§14).
"""

from __future__ import annotations

import functools
import mimetypes
import re
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime

from gateway.compression_rules import parse_accept_encoding, quality_of

# Common web types, so the answer does not depend on the operating system's registry
# (Windows maps .js to text/plain on some machines, for example).
_CONTENT_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",  # RFC 9239
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".br": "application/octet-stream",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}
# Precompressed siblings looked for next to a file, best first when the client rates them equally.
CODINGS = (("br", ".br"), ("gzip", ".gz"))
# An entity-tag (RFC 9110 §8.8.3): optional weak prefix and a quoted opaque tag.
_ENTITY_TAG = re.compile(rb'(W/)?"([^"]*)"')
# Digits beyond this mean "larger than any file"; int() of huge digit strings is slow.
_MAX_DIGITS = 18


class RangeNotSatisfiable(Exception):
    """The Range field names no byte of the representation (RFC 9110 §15.5.17: 416)."""


def content_type(name: str) -> bytes:
    """The Content-Type for a file name; text types get ``charset=utf-8``."""
    dot = name.rfind(".")
    return _type_for_suffix(name[dot:].lower() if dot > 0 else "")


# Only suffixes of files that exist reach here, so the cache holds what the folders hold.
@functools.lru_cache(maxsize=256)
def _type_for_suffix(suffix: str) -> bytes:
    media_type = _CONTENT_TYPES.get(suffix)
    if media_type is None:
        guessed, encoding = mimetypes.guess_type("file" + suffix, strict=False)
        # A compression suffix we do not know (".bz2"): the bytes are not the inner type.
        media_type = guessed if guessed is not None and encoding is None else "application/octet-stream"
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    return media_type.encode("ascii")


def entity_tag(mtime_ns: int, size: int, coding: str | None) -> bytes:
    """A strong ETag from the file's modification time and size (and content coding).

    The same bytes always give the same tag; a change of either value gives a new one. The
    coding is part of it because each precompressed file is its own representation.
    """
    suffix = f"-{coding}" if coding else ""
    return f'"{mtime_ns:x}-{size:x}{suffix}"'.encode("ascii")


@functools.lru_cache(maxsize=1024)
def http_date(seconds: int) -> bytes:
    """An IMF-fixdate (RFC 9110 §5.6.7) for Last-Modified; files share few distinct times."""
    return formatdate(seconds, usegmt=True).encode("ascii")


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP-date (RFC 9110 §5.6.7), or None if invalid.

    All three forms are accepted, as §5.6.7 requires: IMF-fixdate, RFC 850 and asctime.
    """
    try:
        parsed = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # the asctime form has no zone: it is GMT (§5.6.7)
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _tag_matches(field: bytes, etag: bytes, *, weak: bool) -> bool:
    """Whether an If-Match / If-None-Match list names ``etag`` (RFC 9110 §8.8.3.2)."""
    if field.strip() == b"*":
        return True
    opaque = etag[1:-1]
    for prefix, tag in _ENTITY_TAG.findall(field):
        if tag == opaque and (weak or not prefix):
            return True
    return False


def precondition_status(fields: dict[bytes, bytes], etag: bytes, modified: int) -> int | None:
    """412 or 304 when a precondition decides the answer, else None (RFC 9110 §13.2.2).

    If-Match wins over If-Unmodified-Since, and If-None-Match over If-Modified-Since: the
    date is only looked at when the matching tag field is absent. Only GET and HEAD reach
    here, so a true If-None-Match or an unchanged If-Modified-Since means 304.
    """
    if_match = fields.get(b"if-match")
    if if_match is not None:
        if not _tag_matches(if_match, etag, weak=False):
            return 412
    else:
        since = fields.get(b"if-unmodified-since")
        date = parse_http_date(since) if since is not None else None
        if date is not None and modified > date:
            return 412
    if_none_match = fields.get(b"if-none-match")
    if if_none_match is not None:
        return 304 if _tag_matches(if_none_match, etag, weak=True) else None
    since = fields.get(b"if-modified-since")
    date = parse_http_date(since) if since is not None else None
    if date is not None and modified <= date:
        return 304
    return None


def if_range_holds(value: bytes, etag: bytes, modified: int) -> bool:
    """RFC 9110 §13.1.5: the range applies only if the validator still matches.

    An entity-tag must match strongly; a date must equal the Last-Modified time exactly.
    """
    value = value.strip()
    if value.startswith((b'"', b"W/")):
        return value == etag
    date = parse_http_date(value)
    return date is not None and date == modified


def _number(digits: str) -> int | None:
    if not digits.isdigit() or not digits.isascii():
        return None
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def byte_range(value: bytes, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` (end exclusive) one ``bytes=`` range selects, or None to send all.

    None for a field we may ignore (RFC 9110 §14.2): another unit, bad syntax, several
    ranges (answered with the whole file, documented in docs/static.md) or an empty file.
    Raises :class:`RangeNotSatisfiable` when the one range starts past the end.
    """
    unit, equals, specs = value.decode("latin-1").partition("=")
    if not equals or unit.strip().lower() != "bytes" or size == 0:
        return None
    ranges = [spec.strip() for spec in specs.split(",") if spec.strip()]
    if len(ranges) != 1:
        return None
    first_text, dash, last_text = ranges[0].partition("-")
    if not dash:
        return None
    if not first_text:  # suffix-range: the last N bytes (§14.1.2)
        suffix = _number(last_text)
        if suffix is None:
            return None
        if suffix == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    first = _number(first_text)
    last = _number(last_text) if last_text else first
    if first is None or last is None or last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable
    return first, (min(last, size - 1) if last_text else size - 1) + 1


def accepted_codings(field: bytes | None) -> dict[str, float]:
    """Quality values of the codings we can serve precompressed (RFC 9110 §12.5.3).

    A coding the client leaves out is not acceptable; ``*`` stands for those not named;
    ``q=0`` refuses one.
    """
    named = parse_accept_encoding(field)
    if not named:
        return {}
    return {coding: quality_of(named, coding) for coding, _ in CODINGS}
