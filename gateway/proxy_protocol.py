"""The PROXY protocol header, versions 1 and 2, as a sans-IO parser (``--proxy-protocol``).

A TCP load balancer (HAProxy, AWS NLB, ...) that proxies connections would hide the client
address behind its own; with the PROXY protocol it writes one header before the client's
first byte saying who connected to whom. This module reads that header from bytes fed in and
says where the client's own bytes start; ``pre_tls.py`` does the I/O. Specification:
https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (sections cited as "§").
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

Address = tuple[str, int]

V1_PREFIX = b"PROXY "
# §2.1: the longest v1 line, "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n".
V1_MAX_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16
# §2.2 lets the address block grow to 65535 bytes of TLVs; a balancer sends well under
# 1 KiB (ALPN, authority, unique id, TLS details). Past this the peer is not a balancer.
V2_MAX_BLOCK = 4096


class ProxyProtocolError(ValueError):
    """The connection did not start with a valid PROXY protocol header."""


class ProxyCommand(enum.Enum):
    """What the header says about the connection (§2.1 PROXY/UNKNOWN, §2.2 PROXY/LOCAL)."""

    # A relayed connection: the addresses are the client's and the one it connected to.
    PROXY = "proxy"
    # The balancer's own connection (health checks) or a family it cannot describe: keep
    # the real peer address.
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header; the addresses are ``None`` for LOCAL and UNKNOWN connections."""

    command: ProxyCommand
    source: Address | None = None
    destination: Address | None = None


def could_be_proxy_header(data: bytes) -> bool:
    """Whether ``data`` (at least one byte) can still be the start of a v1 or v2 header."""
    return V1_PREFIX.startswith(data[:6]) or V2_SIGNATURE.startswith(data[:12])


class ProxyHeaderParser:
    """Feed bytes until :meth:`feed` returns the header; :attr:`rest` is what followed it.

    Raises :class:`ProxyProtocolError` as soon as the bytes cannot be a valid header, so a
    client that sends something else is refused on its first segment. Memory is bounded by
    ``V2_HEADER_LENGTH + V2_MAX_BLOCK``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rest = b""
        self.header: ProxyHeader | None = None

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Take more bytes; the header once complete (then :attr:`rest` holds the remainder)."""
        if self.header is not None:
            raise ProxyProtocolError("the PROXY header was already read")
        self._buffer += data
        buffer = self._buffer
        if buffer[:1] == b"P":
            if not V1_PREFIX.startswith(bytes(buffer[:6])):
                raise ProxyProtocolError(f"not a PROXY header: {bytes(buffer[:16])!r}")
            return self._v1()
        if not V2_SIGNATURE.startswith(bytes(buffer[:12])):
            raise ProxyProtocolError(f"not a PROXY header: {bytes(buffer[:16])!r}")
        return self._v2()

    def _done(self, header: ProxyHeader, end: int) -> ProxyHeader:
        self.rest = bytes(self._buffer[end:])
        self._buffer = bytearray()
        self.header = header
        return header

    def _v1(self) -> ProxyHeader | None:
        end = self._buffer.find(b"\r\n")
        newline = self._buffer.find(b"\n")
        if 0 <= newline < end or (end < 0 and newline >= 0):
            raise ProxyProtocolError("PROXY v1 line ends without CRLF")
        if end < 0:
            if len(self._buffer) >= V1_MAX_LENGTH:
                raise ProxyProtocolError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
            return None
        if end + 2 > V1_MAX_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
        return self._done(parse_v1_line(bytes(self._buffer[:end])), end + 2)

    def _v2(self) -> ProxyHeader | None:
        buffer = self._buffer
        if len(buffer) < V2_HEADER_LENGTH:
            return None
        length = int.from_bytes(buffer[14:16], "big")
        if length > V2_MAX_BLOCK:
            raise ProxyProtocolError(f"PROXY v2 address block of {length} bytes (at most {V2_MAX_BLOCK})")
        if len(buffer) < V2_HEADER_LENGTH + length:
            return None
        end = V2_HEADER_LENGTH + length
        return self._done(parse_v2(buffer[12], buffer[13], bytes(buffer[V2_HEADER_LENGTH:end])), end)


def parse_v1_line(line: bytes) -> ProxyHeader:
    """``PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT`` or ``PROXY UNKNOWN ...`` (§2.1), no CRLF."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    fields = text.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        # §2.1: the receiver ignores everything after UNKNOWN and uses the real addresses.
        return ProxyHeader(ProxyCommand.LOCAL)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 line: {line[:V1_MAX_LENGTH]!r}")
    version = 4 if fields[1] == "TCP4" else 6
    source = (_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = (_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(ProxyCommand.PROXY, source, destination)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 address {text!r} is not an IP address") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 address {text!r} is not IPv{version}")
    return str(address)


def _v1_port(text: str) -> int:
    # §2.1: ports are decimal 0-65535 without leading zeros.
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is not a number from 0 to 65535")
    return int(text)


def parse_v2(version_command: int, family: int, block: bytes) -> ProxyHeader:
    """The 13th and 14th bytes of a v2 header and its address block (§2.2)."""
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 version {version_command >> 4} (only 2 exists)")
    command = version_command & 0x0F
    if command == 0x0:
        # LOCAL: the balancer's own connection; the block (if any) is ignored.
        return ProxyHeader(ProxyCommand.LOCAL)
    if command != 0x1:
        raise ProxyProtocolError(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
    # High nibble: address family; low nibble: transport. TLVs after the addresses are
    # skipped: nothing here needs them, and their length is already bounded.
    if family == 0x11:  # TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes
        if len(block) < 12:
            raise ProxyProtocolError("PROXY v2 TCP4 address block shorter than 12 bytes")
        source = (str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big"))
        destination = (str(ipaddress.IPv4Address(block[4:8])), int.from_bytes(block[10:12], "big"))
        return ProxyHeader(ProxyCommand.PROXY, source, destination)
    if family == 0x21:  # TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes
        if len(block) < 36:
            raise ProxyProtocolError("PROXY v2 TCP6 address block shorter than 36 bytes")
        source = (str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big"))
        destination = (str(ipaddress.IPv6Address(block[16:32])), int.from_bytes(block[34:36], "big"))
        return ProxyHeader(ProxyCommand.PROXY, source, destination)
    # UNSPEC, UDP and Unix sockets: §2.2 says to accept the connection with the real
    # addresses, as for LOCAL.
    return ProxyHeader(ProxyCommand.LOCAL)
