"""The HTTP rules of response compression, free of I/O and of any compressor.

Accept-Encoding negotiation (RFC 9110 §12.5.3), which responses may be compressed at all,
and how their fields change when they are: Content-Encoding added, Content-Length dropped,
the ETag made weak (§8.8.1), ``Vary: Accept-Encoding`` merged in (§12.5.5).
:mod:`gateway.compression` runs the compressors; the static files use
:func:`parse_accept_encoding` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.events import Headers
from gateway.response_options import media_type_pattern

# Statuses whose response has no content (§15.3.5, §15.4.5) or a partial one (§15.3.7:
# the range is of the uncompressed representation).
_NOT_COMPRESSED_STATUSES = frozenset((204, 206, 304))


def parse_accept_encoding(field: bytes | None) -> dict[str, float]:
    """The codings an Accept-Encoding field names, lowercased, with their quality values.

    ``x-gzip`` counts as ``gzip`` (§8.4.1.3). A quality that does not parse or lies
    outside 0..1 counts as 0 (refused): a client that garbles it gets no compression.
    ``*`` is kept as a key; :func:`quality_of` applies it.
    """
    if not field:
        return {}
    named: dict[str, float] = {}
    for element in field.decode("latin-1").split(","):
        coding, _, parameters = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        if coding == "x-gzip":
            coding = "gzip"
        quality = 1.0
        name, equals, number = parameters.partition("=")
        if equals and name.strip().lower() == "q":
            quality = _quality(number.strip())
        named[coding] = quality
    return named


def _quality(text: str) -> float:
    # RFC 9110 §12.4.2: qvalue = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ].
    whole, _, fraction = text.partition(".")
    if whole not in ("0", "1") or len(fraction) > 3 or not all(digit in "0123456789" for digit in fraction):
        return 0.0
    value = float(text)
    return value if value <= 1.0 else 0.0


def quality_of(named: dict[str, float], coding: str) -> float:
    """The quality the client gives ``coding``: its own entry, else ``*``'s, else 0."""
    if coding in named:
        return named[coding]
    return named.get("*", 0.0)


def choose_coding(field: bytes | None, available: Sequence[str]) -> str | None:
    """The content coding to answer with, or None for the identity (no compression).

    The highest quality above 0 wins; among equals, the order of ``available`` (the
    server's preference) decides. No Accept-Encoding field means identity: RFC 9110
    §12.5.3 would allow any coding, but clients that send none (curl without --compressed,
    scripts) usually cannot decode one. The identity wins when the client rates it higher
    than every coding on offer (``identity;q=1, gzip;q=0.5``).
    """
    named = parse_accept_encoding(field)
    if not named:
        return None
    best, best_quality = None, 0.0
    for coding in available:
        quality = quality_of(named, coding)
        if quality > best_quality:
            best, best_quality = coding, quality
    if best is None:
        return None
    # §12.5.3: ``*`` speaks for the identity too unless the identity is named itself.
    identity = named.get("identity", named.get("*", 0.0))
    return None if identity > best_quality else best


class MediaTypes:
    """The --compress-types patterns: ``type/subtype``, ``type/*`` or ``type/*+suffix``."""

    __slots__ = ("_exact", "_suffixes", "_top_levels")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._top_levels: set[str] = set()
        self._suffixes: set[tuple[str, str]] = set()
        for pattern in patterns:
            top, _, sub = media_type_pattern(pattern).partition("/")
            if sub == "*":
                self._top_levels.add(top)
            elif sub.startswith("*+"):
                self._suffixes.add((top, sub[1:]))
            else:
                self._exact.add(f"{top}/{sub}")

    def matches(self, content_type: bytes) -> bool:
        """Whether a Content-Type value (parameters allowed) is one of the patterns."""
        media_type = content_type.partition(b";")[0].strip().lower().decode("latin-1")
        if media_type in self._exact:
            return True
        top, _, sub = media_type.partition("/")
        if top in self._top_levels:
            return True
        plus = sub.rfind("+")
        return plus > 0 and (top, sub[plus:]) in self._suffixes


def fields_by_name(headers: Headers) -> dict[bytes, bytes]:
    """Lowercased names -> values (repeated fields joined with ", ", RFC 9110 §5.3)."""
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        lowered = name.lower()
        fields[lowered] = fields[lowered] + b", " + value if lowered in fields else value
    return fields


def compressible(status: int, fields: dict[bytes, bytes], types: MediaTypes, min_size: int) -> bool:
    """Whether this response's content may be compressed (whatever the client accepts).

    Never: no content or a range (204, 304, 206, Content-Range), content that is encoded
    already (any Content-Encoding), ``Cache-Control: no-transform`` (RFC 9111 §5.2.2.6:
    intermediaries must not change the content), a type not in --compress-types (or none),
    or a Content-Length below --compress-min-size. Without Content-Length (a streaming
    response) the size is unknown and the response is compressed, as nginx does.
    """
    if status in _NOT_COMPRESSED_STATUSES or b"content-encoding" in fields or b"content-range" in fields:
        return False
    content_type = fields.get(b"content-type")
    if content_type is None or not types.matches(content_type):
        return False
    cache_control = fields.get(b"cache-control")
    if cache_control is not None and b"no-transform" in [part.strip() for part in cache_control.lower().split(b",")]:
        return False
    length = fields.get(b"content-length")
    return length is None or not length.strip().isdigit() or int(length) >= min_size


def vary_accept_encoding(headers: Headers) -> Headers:
    """``headers`` with Accept-Encoding in Vary (RFC 9110 §12.5.5), merged into an existing Vary."""
    for index, (name, value) in enumerate(headers):
        if name.lower() != b"vary":
            continue
        listed = [part.strip().lower() for part in value.split(b",")]
        if b"*" in listed or b"accept-encoding" in listed:
            return headers
        merged = list(headers)
        merged[index] = (name, value + b", Accept-Encoding" if value.strip() else b"Accept-Encoding")
        return merged
    return [*headers, (b"vary", b"Accept-Encoding")]


def encoded_headers(headers: Headers, coding: str) -> Headers:
    """The fields of the compressed response.

    Content-Length goes (the adapter frames the body: chunked on HTTP/1.1); a strong ETag
    becomes weak, since the bytes differ from the identity's while the content is the same
    (RFC 9110 §8.8.1); Accept-Ranges goes, since ranges are of the uncompressed bytes.
    """
    result: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"accept-ranges":
            continue
        if lowered == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value
        result.append((name, value))
    result.append((b"content-encoding", coding.encode("ascii")))
    return result
