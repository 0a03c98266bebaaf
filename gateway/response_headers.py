"""Fields asgigw adds to responses: ``--hsts`` and ``--header "Name: value"``.

Built once from :class:`~gateway.config.Config`. Strict-Transport-Security goes only on
responses to requests that came over TLS (RFC 6797 §7.2: a host must not send it over
plain HTTP, and browsers ignore it there). A field the response already has wins: an app
that sets its own HSTS or X-Frame-Options keeps it.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.events import Headers
from gateway.response_options import split_header_option


def hsts_value(max_age: int, *, include_subdomains: bool, preload: bool) -> bytes:
    """The Strict-Transport-Security value (RFC 6797 §6.1; ``preload`` is hstspreload.org's)."""
    value = b"max-age=%d" % max_age
    if include_subdomains:
        value += b"; includeSubDomains"
    if preload:
        value += b"; preload"
    return value


class ResponseHeaders:
    """The configured extra fields; :meth:`add_to` puts them on one response."""

    __slots__ = ("_plain", "_secure")

    def __init__(self, config: Config) -> None:
        fields: list[tuple[bytes, bytes, bytes]] = []
        for entry in config.response_headers:
            name, value = split_header_option(entry)
            fields.append((name.lower().encode("ascii"), name.encode("ascii"), value.encode("ascii")))
        self._plain = tuple(fields)
        if config.hsts is not None:
            hsts = hsts_value(
                config.hsts, include_subdomains=config.hsts_include_subdomains, preload=config.hsts_preload
            )
            fields.append((b"strict-transport-security", b"strict-transport-security", hsts))
        self._secure = tuple(fields)

    @classmethod
    def from_config(cls, config: Config) -> ResponseHeaders | None:
        """The extra fields, or None when none are configured (responses pay nothing then)."""
        if config.hsts is None and not config.response_headers:
            return None
        return cls(config)

    def add_to(self, headers: Headers, *, secure: bool) -> Headers:
        """``headers`` plus each configured field whose name it lacks (HSTS when ``secure``)."""
        fields = self._secure if secure else self._plain
        if not fields:
            return headers
        present = {name.lower() for name, _ in headers}
        added = [(name, value) for lowered, name, value in fields if lowered not in present]
        return [*headers, *added] if added else headers
