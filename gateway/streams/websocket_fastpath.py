"""A fast path for the commonest inbound frames: whole, small, masked text/binary messages.

wsproto's parser runs a generator, a buffer object and several dataclasses per frame; for
echo-style traffic (one small message per read) that was most of the server's time per
message. While wsproto holds no partial frame or message and no extension is active,
frames that are complete, unfragmented (FIN), masked text or binary with a 7- or 16-bit
length are decoded here; anything else (control frames, fragments, large or partial frames,
invalid UTF-8, a message over the size limit) is left, from that byte on, to wsproto, which
then starts from a frame boundary as if it had parsed everything before itself. Without the
``websockets`` C unmasking, or if wsproto's internals ever change shape, it stays off.
"""

from __future__ import annotations

from typing import Any

from gateway.asgi import Message
from gateway.streams.websocket_masking import apply_mask


def wsproto_idle(frames: Any) -> bool:
    """True when wsproto holds no buffered bytes, no partial frame and no partial message."""
    try:
        protocol = frames._proto
        decoder = protocol._frame_decoder
        return decoder.header is None and not len(decoder.buffer) and protocol._message_decoder.opcode is None
    except AttributeError:  # another wsproto version: use wsproto for everything
        return False


def parse_simple_frames(data: bytes, limit: int, messages: list[Message]) -> int:
    """Decode leading simple frames of ``data`` into ``messages``; return the bytes used."""
    if apply_mask is None:
        return 0
    position = 0
    size = len(data)
    while position + 6 <= size:
        first, second = data[position], data[position + 1]
        # RFC 6455 §5.2: FIN set, no RSV bits, opcode 1 (text) or 2 (binary), MASK set.
        if (first != 0x81 and first != 0x82) or second < 0x80:
            break
        length = second & 0x7F
        start = position + 6
        if length == 126:
            start += 2
            if start > size:
                break
            length = int.from_bytes(data[position + 2 : position + 4], "big")
        elif length == 127:
            break
        end = start + length
        if end > size or (limit and length > limit):
            break
        payload = apply_mask(data[start:end], data[start - 4 : start])
        if first == 0x81:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                break  # wsproto fails the connection with 1007
            messages.append({"type": "websocket.receive", "bytes": None, "text": text})
        else:
            messages.append({"type": "websocket.receive", "bytes": payload, "text": None})
        position = end
    return position
