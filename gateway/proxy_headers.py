"""Client address, scheme and host from trusted proxy headers (``--proxy-headers``).

A reverse proxy or load balancer that terminates HTTP replaces the peer address with its
own and says who the client was in ``Forwarded`` (RFC 7239) or the older
``X-Forwarded-For`` / ``X-Forwarded-Proto`` / ``X-Forwarded-Host``. Anyone can send those
headers, so they count only when the peer is a trusted proxy (``--forwarded-allow-ips``),
and the list is read from the right: each trusted hop is skipped, the first untrusted
address is the client. A client that sends its own header therefore changes nothing but the
left part of the list, which is never reached while an untrusted hop stands in between.

:class:`TrustedProxies` is built once from ``Config``; the connection asks it whether the
peer is trusted (once per connection) and :meth:`TrustedProxies.resolve` is a pure function
of ``(peer, headers)`` that ``asgi.build_http_scope`` calls per request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = frozenset({"http", "https", "ws", "wss"})
# RFC 7230 §3.2.6 tchar: what a token may hold (RFC 7239 §4 values are tokens or quoted strings).
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 7239 §6.3: obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" / "-")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
# More hops than any real chain of proxies; a longer header is read only this far from the right.
MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class Hop:
    """One proxy hop: who it received the request from, over which scheme, for which host.

    ``node`` is the ``for=`` value or an ``X-Forwarded-For`` entry: an IP address (with an
    optional port), ``unknown`` or an obfuscated ``_identifier`` (RFC 7239 §6); ``None`` when
    the entry could not be read at all.
    """

    node: str | None
    proto: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What a trusted chain of proxies says about the original request.

    ``client`` is the peer itself when the headers name no one else; ``scheme`` and ``host``
    are ``None`` when no usable value was given (the scope keeps its own).
    """

    client: Address | None
    scheme: str | None
    host: str | None


def parse_networks(entries: Iterable[str]) -> tuple[tuple[Network, ...], bool]:
    """``--forwarded-allow-ips`` entries as networks; the flag is True when ``*`` is among them.

    Entries may hold several comma-separated values. Config has already checked each one.
    """
    networks: list[Network] = []
    trust_all = False
    for entry in entries:
        for text in entry.split(","):
            text = text.strip()
            if text == "*":
                trust_all = True
            elif text:
                networks.append(ipaddress.ip_network(text, strict=False))
    return tuple(networks), trust_all


def split_node(node: str) -> Address | None:
    """An RFC 7239 node or X-Forwarded-For entry as ``(ip, port)``; ``None`` when not an IP.

    Accepts ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:4711``; a missing or obfuscated port is 0.
    """
    node = node.strip()
    port_text = ""
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return None
        host, rest = node[1:end], node[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
    else:
        host = node
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 and int(port_text) <= 65535 else 0
    return (str(ip), port)


def _split_outside_quotes(text: str, separator: str) -> list[str] | None:
    """Split at ``separator`` except inside quoted strings; ``None`` for an unclosed quote."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        return None
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    """A token or quoted-string value (RFC 7230 §3.2.6) as text; ``None`` when malformed."""
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            return None
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                return None
            else:
                out.append(char)
        return None if escaped else "".join(out)
    if value and all(char in _TOKEN_CHARS or char in ":[]" for char in value):
        # Brackets and colons are not token characters, but proxies send unquoted IPv6
        # nodes anyway; the address check that follows rejects anything else.
        return value
    return None


def _forwarded_element(element: str) -> Hop:
    """One ``Forwarded`` element (``for=...;proto=...;host=...``); unreadable -> node None."""
    pairs = _split_outside_quotes(element, ";")
    values: dict[str, str] = {}
    for pair in pairs or ():
        name, equals, raw = pair.strip().partition("=")
        value = _unquote(raw.strip())
        if not equals or value is None:
            return Hop(None)
        values[name.strip().lower()] = value
    if pairs is None or "for" not in values:
        return Hop(None)
    return Hop(values["for"], values.get("proto"), values.get("host"))


def parse_forwarded(lines: Sequence[str]) -> list[Hop]:
    """The hops of all ``Forwarded`` header lines, in order (RFC 7239 §4: lines join with commas)."""
    hops: list[Hop] = []
    for line in lines:
        elements = _split_outside_quotes(line, ",")
        if elements is None:  # an unclosed quote: the line cannot be trusted anywhere
            hops.append(Hop(None))
            continue
        hops.extend(_forwarded_element(element) for element in elements if element.strip())
    return hops


def _list_values(lines: Sequence[str]) -> list[str]:
    return [value.strip() for line in lines for value in line.split(",") if value.strip()]


def parse_x_forwarded(for_lines: Sequence[str], proto_lines: Sequence[str], host_lines: Sequence[str]) -> list[Hop]:
    """The hops of ``X-Forwarded-For``, with ``-Proto``/``-Host`` matched by position.

    When a proto/host list is as long as the address list each hop gets its own value;
    otherwise every hop gets the last value, the one the nearest proxy wrote.
    """
    nodes = _list_values(for_lines)
    protos = _list_values(proto_lines)
    hosts = _list_values(host_lines)

    def pick(values: list[str], index: int) -> str | None:
        if not values:
            return None
        return values[index] if len(values) == len(nodes) else values[-1]

    return [Hop(node, pick(protos, index), pick(hosts, index)) for index, node in enumerate(nodes)]


class TrustedProxies:
    """``--forwarded-allow-ips`` as parsed networks, and the right-to-left walk over hops."""

    def __init__(self, allow: Iterable[str], *, use_host: bool = False) -> None:
        self._networks, self._trust_all = parse_networks(allow)
        self._use_host = use_host

    def trusts(self, address: Address | None) -> bool:
        """Whether a peer (or a hop) at ``address`` may speak for its client."""
        if self._trust_all:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError:  # a Unix socket path or similar: not an address we can trust
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    def resolve(self, peer: Address | None, headers: Iterable[tuple[bytes, bytes]]) -> Forwarded:
        """The client, scheme and host the trusted proxies report for one request.

        ``peer`` must already be trusted. ``Forwarded`` wins over ``X-Forwarded-*`` when both
        are present (a proxy that writes it is newer than one that writes the others).
        Fields without a usable value are ``None`` and leave the scope as it was.
        """
        forwarded: list[str] = []
        xff: list[str] = []
        xfp: list[str] = []
        xfh: list[str] = []
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-for":
                xff.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                xfp.append(value.decode("latin-1"))
            elif name == b"x-forwarded-host":
                xfh.append(value.decode("latin-1"))
        if forwarded:
            hops = parse_forwarded(forwarded)
        elif xff or xfp or xfh:
            hops = parse_x_forwarded(xff, xfp, xfh)
            if not xff:  # only a proto or host: it describes the peer's own client
                hops = [Hop(None, _last_value(xfp), _last_value(xfh))]
        else:
            return Forwarded(peer, None, None)
        return self._walk(peer, hops[-MAX_HOPS:])

    def _walk(self, peer: Address | None, hops: list[Hop]) -> Forwarded:
        if not hops:
            return Forwarded(peer, None, None)
        client: Address | None = peer
        chosen = hops[-1]
        for index in range(len(hops) - 1, -1, -1):
            hop = hops[index]
            chosen = hop
            if hop.node is None:
                # Unreadable: stop, keep the last address a trusted proxy vouched for.
                break
            address = split_node(hop.node)
            if address is None:
                # RFC 7239 §6: "unknown" or an obfuscated "_identifier" hides the client;
                # anything else is garbage, and the last trusted address stands.
                if hop.node.lower() == "unknown":
                    client = None
                elif _OBFUSCATED.fullmatch(hop.node):
                    client = (hop.node, 0)
                break
            client = address
            if not self.trusts(address):
                break
        scheme = chosen.proto.lower() if chosen.proto and chosen.proto.lower() in _SCHEMES else None
        host = chosen.host if self._use_host and chosen.host and _valid_host(chosen.host) else None
        return Forwarded(client, scheme, host)


def _last_value(lines: list[str]) -> str | None:
    """The last comma-separated value of header lines (the nearest proxy's), or ``None``."""
    values = _list_values(lines)
    return values[-1] if values else None


def _valid_host(host: str) -> bool:
    # RFC 9110 §7.2 / RFC 3986 §3.2.2: reg-name or [IPv6] with an optional port; no
    # whitespace, slashes or other bytes that would let a forged host split a URL.
    return len(host) <= 255 and all(char.isalnum() or char in "-._:[]" for char in host) and host.isascii()
