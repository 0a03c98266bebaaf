"""permessage-deflate (RFC 7692): the server's side of the negotiation and a bounded inflater.

wsproto's own extension inflates each frame completely, so a few kilobytes of compressed
input could expand to gigabytes before any size check runs. :class:`BoundedPerMessageDeflate`
inflates inbound messages with zlib's ``max_length``, so it never produces more than
``--ws-max-message-size`` bytes of one message, and compresses outbound ones with a deflate
state an eighth the size of wsproto's.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from gateway.streams.websocket_messages import frame_header

if TYPE_CHECKING:
    from wsproto.frame_protocol import FrameDecoder, FrameProtocol

# RFC 7692 §7.2.2: the sender strips these four bytes from the end of each message; the
# receiver appends them again before inflating.
_MESSAGE_TAIL = b"\x00\x00\xff\xff"
_PARAMETERS = frozenset(
    ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits", "client_max_window_bits")
)


class BoundedPerMessageDeflate(PerMessageDeflate):
    """The server's permessage-deflate with an upper bound on each inflated message."""

    def __init__(
        self,
        max_message_size: int,
        *,
        client_no_context_takeover: bool,
        server_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
    ) -> None:
        super().__init__(
            client_no_context_takeover=client_no_context_takeover,
            server_no_context_takeover=server_no_context_takeover,
            server_max_window_bits=server_max_window_bits,
        )
        self._max_message_size = max_message_size
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        self._control_frame = False
        # None between messages; otherwise whether the message being received is compressed.
        self._message_compressed: bool | None = None
        self._inflated = 0

    def enabled(self) -> bool:
        """Always on: instances exist only once the handshake has agreed on the extension."""
        return True

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        """Note whether the message is compressed (RSV1 on its first frame, RFC 7692 §6)."""
        if opcode.iscontrol() or opcode is Opcode.CONTINUATION:
            # RFC 7692 §6.1: RSV1 only on the first frame of a data message. Control frames
            # may arrive between fragments; they leave the message state alone.
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._control_frame = opcode.iscontrol()
            return RsvBits(False, False, False)
        self._control_frame = False
        self._message_compressed = rsv.rsv1
        self._inflated = 0
        if rsv.rsv1 and self._inflater is None:
            # A 15-bit window inflates data written with any smaller window as well.
            self._inflater = zlib.decompressobj(-15)
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        """Inflate a piece of a compressed message, never past the message size limit."""
        if self._control_frame or not self._message_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        """At the end of a compressed message, inflate what the stripped tail releases."""
        if self._control_frame or not fin:
            return None
        compressed = self._message_compressed
        self._message_compressed = None
        if not compressed:
            return None
        result = self._inflate(_MESSAGE_TAIL)
        if self.client_no_context_takeover:
            self._inflater = None
        return result

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        inflater = self._inflater
        if inflater is None or inflater.eof:
            # The client ended the deflate stream (BFINAL); RFC 7692 §7.2.3.4 allows that, and
            # what follows starts a new one.
            inflater = self._inflater = zlib.decompressobj(-15)
        limit = self._max_message_size
        try:
            if not limit:
                output = inflater.decompress(data)
            else:
                # One byte more than the room left tells "too big" without inflating the rest.
                output = inflater.decompress(data, limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(output)
        if limit and self._inflated > limit:
            return CloseReason.MESSAGE_TOO_BIG
        return output

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        """Compress an outbound data frame (RFC 7692 §7.2.1) with a small deflate state.

        zlib's defaults (15-bit window, memLevel 8) hold about 256 KiB per connection for
        as long as the context is taken over; a 12-bit window and memLevel 5 hold about
        32 KiB. A sender may always use a smaller window than agreed (§7.1.2.1).
        """
        if opcode.iscontrol():
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        return rsv, self._compress(data, fin)

    def message_frame(self, opcode: int, payload: bytes) -> bytes:
        """One whole compressed message as a frame: FIN, RSV1 (RFC 7692 §6), opcode, payload.

        The stream frames the app's messages itself, so that its last replies can still go
        out after the peer's close frame, when wsproto sends no more data.
        """
        compressed = self._compress(payload, True)
        return frame_header(0xC0 | opcode, len(compressed)) + compressed

    def _compress(self, data: bytes, fin: bool) -> bytes:
        deflater = self._deflater
        if deflater is None:
            bits = min(self.server_max_window_bits, _SERVER_WINDOW_BITS)
            deflater = self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, _MEMORY_LEVEL
            )
        output = deflater.compress(bytes(data))
        if fin:
            # §7.2.1: end with an empty sync-flushed block and strip its 00 00 FF FF.
            output = (output + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
            if self.server_no_context_takeover:
                self._deflater = None
        return output


_SERVER_WINDOW_BITS = 12
_MEMORY_LEVEL = 5


def _parse_offer(offer: str) -> dict[str, str | None] | None:
    """Parameters of one offer, or None when RFC 7692 §5 says to decline it."""
    name, *items = (item.strip() for item in offer.split(";"))
    if name != "permessage-deflate":
        return None
    parameters: dict[str, str | None] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if key not in _PARAMETERS or key in parameters:
            return None  # unknown or repeated parameter
        if key.endswith("_max_window_bits"):
            if equals or key == "server_max_window_bits":
                if not value.isdigit() or not 8 <= int(value) <= 15:
                    return None
            else:
                value = ""
        elif equals:
            return None  # the context-takeover parameters have no value
        parameters[key] = value if equals else None
    return parameters


def negotiate(offers: list[str], max_message_size: int) -> tuple[BoundedPerMessageDeflate, bytes] | None:
    """Accept the first acceptable permessage-deflate offer: the extension and the reply field.

    An 8-bit server window is declined: zlib silently writes raw deflate with 9 bits, which a
    client holding an 8-bit window could not read.
    """
    for offer in offers:
        parameters = _parse_offer(offer)
        if parameters is None:
            continue
        server_bits = parameters.get("server_max_window_bits")
        if server_bits is not None and int(server_bits) < 9:
            continue
        client_no_takeover = "client_no_context_takeover" in parameters
        server_no_takeover = "server_no_context_takeover" in parameters
        reply = ["permessage-deflate"]
        if server_no_takeover:
            reply.append("server_no_context_takeover")
        if client_no_takeover:
            reply.append("client_no_context_takeover")
        if server_bits is not None:
            reply.append(f"server_max_window_bits={server_bits}")
        extension = BoundedPerMessageDeflate(
            max_message_size,
            client_no_context_takeover=client_no_takeover,
            server_no_context_takeover=server_no_takeover,
            server_max_window_bits=int(server_bits) if server_bits is not None else None,
        )
        return extension, "; ".join(reply).encode("ascii")
    return None
