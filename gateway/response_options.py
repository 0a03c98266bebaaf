"""The syntax of the response options (--hsts, --header, --compress-types), free of imports.

Part of the configuration leaf: :mod:`gateway.config` checks its values with
:func:`check_response_options`, and :mod:`gateway.response_headers` and
:mod:`gateway.compression_rules` parse them with the same functions. Errors are
``ValueError`` with one line that names the option.
"""

from __future__ import annotations

# The default --compress-types: text formats and others that shrink well. Images, audio,
# video, WOFF/WOFF2 fonts and archives are compressed already and are left out.
DEFAULT_COMPRESS_TYPES = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
    "font/ttf",
    "font/otf",
    "image/vnd.microsoft.icon",
    "image/x-icon",
)
# Fields asgigw computes itself or that describe the connection, never set by --header.
_COMPUTED_FIELDS = frozenset(
    "connection content-encoding content-length content-range date keep-alive proxy-connection"
    " te trailer transfer-encoding upgrade".split()
)
_TOKEN_CHARACTERS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# One year: the least max-age the HSTS preload list accepts.
HSTS_PRELOAD_MIN_AGE = 31536000


def check_response_options(
    hsts: int | None,
    include_subdomains: bool,
    preload: bool,
    headers: tuple[str, ...],
    compress_types: tuple[str, ...],
    compress_min_size: int,
) -> None:
    """ValueError naming the option when one of these values cannot be used."""
    if hsts is not None and hsts < 0:
        raise ValueError("--hsts must be 0 (browsers forget the host) or more seconds")
    if hsts is None and (include_subdomains or preload):
        raise ValueError("--hsts-include-subdomains and --hsts-preload need --hsts SECONDS")
    if preload and (not include_subdomains or (hsts or 0) < HSTS_PRELOAD_MIN_AGE):
        raise ValueError(
            f"--hsts-preload needs --hsts-include-subdomains and --hsts {HSTS_PRELOAD_MIN_AGE} (a year) or more"
        )
    for entry in headers:
        split_header_option(entry)
    if not compress_types:
        raise ValueError("--compress-types needs at least one media type, e.g. text/*")
    for pattern in compress_types:
        media_type_pattern(pattern)
    if compress_min_size < 0:
        raise ValueError("--compress-min-size must be 0 or more bytes")


def split_header_option(text: str) -> tuple[str, str]:
    """``(name, value)`` of a ``--header "Name: value"``; ValueError when it is not a legal field.

    RFC 9110 §5.1: the name is a token; §5.5: the value (without the whitespace around it)
    has no control characters. Printable ASCII only: other bytes are obsolete in values.
    """
    name, colon, value = text.partition(":")
    value = value.strip(" \t")
    if not colon or not name or not all(character in _TOKEN_CHARACTERS for character in name):
        raise ValueError(f"--header {text!r}: expected 'Name: value' with a field name such as X-Frame-Options")
    if not all(" " <= character <= "~" or character == "\t" for character in value):
        raise ValueError(f"--header {text!r}: the value must be printable ASCII (no control characters)")
    lowered = name.lower()
    if lowered in _COMPUTED_FIELDS:
        raise ValueError(f"--header {text!r}: asgigw sets {name} itself")
    if lowered == "strict-transport-security":
        raise ValueError(f"--header {text!r}: use --hsts, which sends it over TLS only (RFC 6797 §7.2)")
    return name, value


def media_type_pattern(pattern: str) -> str:
    """A --compress-types entry lowercased: ``type/subtype``, ``type/*`` or ``type/*+suffix``."""
    text = pattern.strip().lower()
    top, slash, subtype = text.partition("/")
    suffix = subtype[2:] if subtype.startswith("*+") else subtype
    if not (slash and _is_token(top) and (subtype == "*" or _is_token(suffix))):
        raise ValueError(f"--compress-types {pattern!r}: expected type/subtype, type/* or type/*+suffix")
    return text


def _is_token(text: str) -> bool:
    return bool(text) and "*" not in text and all(character in _TOKEN_CHARACTERS for character in text)
