"""Reading a TLS ClientHello before the handshake: the server name (SNI) and ALPN offers.

Sans-IO and bounded: :func:`parse_client_hello` takes the bytes read so far and says
whether the ClientHello is complete. The transport uses it only where a decision must be
made before choosing a certificate: an ACME tls-alpn-01 validation (RFC 8737) offers
exactly ``acme-tls/1`` and must get the challenge certificate, which Python's SNI callback
alone cannot tell from a browser's handshake for the same name. Layouts from RFC 8446
§4.1.2 (ClientHello, also TLS 1.2's), RFC 6066 §3 (server_name), RFC 7301 §3.1 (ALPN).
"""

from __future__ import annotations

from dataclasses import dataclass

HANDSHAKE_RECORD = 0x16
CLIENT_HELLO = 0x01
EXTENSION_SERVER_NAME = 0
EXTENSION_ALPN = 16
# A ClientHello larger than this is not one we need to read (post-quantum key shares make
# them a few KiB; the record layer caps a fragment at 16 KiB).
MAX_CLIENT_HELLO = 64 * 1024


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the transport needs from a ClientHello."""

    server_name: str | None
    alpn_protocols: tuple[str, ...]


class NotClientHello(ValueError):
    """The bytes are not a TLS ClientHello (or one too large or malformed to read)."""


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello in ``data``, None if more bytes are needed; raises NotClientHello."""
    message = _handshake_message(data)
    if message is None:
        return None
    return _parse_body(message)


def _handshake_message(data: bytes) -> bytes | None:
    """Reassemble the first handshake message from its records (it may span several)."""
    fragments = bytearray()
    offset = 0
    while True:
        if len(data) < offset + 5:
            return None
        if data[offset] != HANDSHAKE_RECORD or data[offset + 1] != 3:
            raise NotClientHello("not a TLS handshake record")
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if length == 0 or length > 16384 + 256:
            raise NotClientHello("bad TLS record length")
        if len(data) < offset + 5 + length:
            return None
        fragments += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(fragments) >= 4:
            if fragments[0] != CLIENT_HELLO:
                raise NotClientHello("the first handshake message is not a ClientHello")
            size = int.from_bytes(fragments[1:4], "big")
            if size > MAX_CLIENT_HELLO:
                raise NotClientHello("ClientHello too large")
            if len(fragments) >= 4 + size:
                return bytes(fragments[4 : 4 + size])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise NotClientHello("truncated ClientHello")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))

    def done(self) -> bool:
        return self.offset >= len(self.data)


def _parse_body(body: bytes) -> ClientHello:
    reader = _Reader(body)
    reader.take(2 + 32)  # legacy_version, random
    reader.vector(1)  # legacy_session_id
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if reader.done():  # no extensions at all (very old clients)
        return ClientHello(None, ())
    extensions = _Reader(reader.vector(2))
    while not extensions.done():
        kind = extensions.number(2)
        data = extensions.vector(2)
        if kind == EXTENSION_SERVER_NAME:
            server_name = _server_name(data)
        elif kind == EXTENSION_ALPN:
            alpn = _alpn(data)
    return ClientHello(server_name, alpn)


def _server_name(data: bytes) -> str | None:
    names = _Reader(_Reader(data).vector(2))
    while not names.done():
        kind = names.number(1)
        name = names.vector(2)
        if kind == 0:  # host_name
            try:
                return name.decode("ascii").lower()
            except UnicodeDecodeError:
                raise NotClientHello("server name is not ASCII") from None
    return None


def _alpn(data: bytes) -> tuple[str, ...]:
    protocols = _Reader(_Reader(data).vector(2))
    offered: list[str] = []
    while not protocols.done():
        offered.append(protocols.vector(1).decode("latin-1"))
    return tuple(offered)
