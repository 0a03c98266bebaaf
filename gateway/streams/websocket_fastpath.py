"""A fast path for the commonest inbound frames: whole (FIN) masked text or binary frames.

wsproto's parser runs a generator, a buffer object and several dataclasses per frame and
copies a large payload four or five times; for echo-style traffic that was most of the
server's time per message. While wsproto holds no partial frame or message and no
extension is active, :class:`SimpleFrameReader` decodes such frames itself: small ones
straight from the bytes read, binary ones that span reads by collecting exactly that frame.
Anything else (control frames, fragments, a text frame spanning reads, invalid UTF-8, a
frame over the size limit) is left, from its first byte on, to wsproto, which then starts
at a frame boundary as if it had parsed everything before itself. Without the
``websockets`` C unmasking, or if wsproto's internals ever change shape, it stays off.
"""

from __future__ import annotations

from typing import Any

from gateway.asgi import Message
from gateway.streams.websocket_masking import apply_mask


def wsproto_idle(frames: Any) -> bool:
    """True when wsproto holds no buffered bytes, no partial frame and no partial message."""
    if apply_mask is None:
        return False
    try:
        protocol = frames._proto
        decoder = protocol._frame_decoder
        return decoder.header is None and not len(decoder.buffer) and protocol._message_decoder.opcode is None
    except AttributeError:  # another wsproto version: use wsproto for everything
        return False


# From this payload size on, unmasking reads the payload through a memoryview of the bytes
# read rather than a slice: one copy of it instead of two. Smaller, the slice is cheaper.
_VIEW_FROM = 512


class SimpleFrameReader:
    """Decodes simple frames; holds at most one partial binary frame of at most ``limit``."""

    __slots__ = ("_limit", "_pending", "needed")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()
        # Total size (header + payload) of the binary frame being collected; 0 = none.
        self.needed = 0

    @property
    def collecting(self) -> bool:
        """True while a frame spanning reads is being collected (wsproto must not see it)."""
        return self.needed > 0

    def feed(self, data: bytes, messages: list[Message], start: int = 0, stop: int | None = None) -> int:
        """Decode frames from ``data[start:]`` into ``messages``; return where decoding stopped.

        Frames that begin at or after ``stop`` are left alone (one loop turn's share), so
        the return value is either at least ``stop`` or the start of a frame for wsproto.
        A frame spanning reads is collected whole, however far past ``stop`` it ends.
        """
        assert apply_mask is not None  # wsproto_idle() is False without it
        size = len(data)
        if self.needed:
            pending = self._pending
            taken = min(self.needed - len(pending), size - start)
            pending += memoryview(data)[start : start + taken]
            start += taken
            if len(pending) < self.needed:
                return start
            messages.append(self._collected())
        return self._parse(data, messages, start, size if stop is None else min(stop, size))

    def _collected(self) -> Message:
        assert apply_mask is not None
        frame = memoryview(self._pending)
        # RFC 6455 §5.2: two bytes, then 0, 2 or 8 bytes of extended length, then the
        # 4-byte mask key (a small frame cut before its payload ends is collected too).
        length_code = frame[1] & 0x7F
        header = 14 if length_code == 127 else 8 if length_code == 126 else 6
        payload = apply_mask(frame[header:], bytes(frame[header - 4 : header]))
        frame.release()
        self._pending = bytearray()
        self.needed = 0
        return {"type": "websocket.receive", "bytes": payload, "text": None}

    def _parse(self, data: bytes, messages: list[Message], position: int, stop: int) -> int:
        assert apply_mask is not None
        size = len(data)
        limit = self._limit
        while position < stop and position + 6 <= size:
            first, second = data[position], data[position + 1]
            # RFC 6455 §5.2: FIN set, no RSV bits, opcode 1 (text) or 2 (binary), MASK set.
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break
            length = second & 0x7F
            start = position + 6
            if length >= 126:
                start += 2 if length == 126 else 8
                if start > size:
                    break
                encoded = length
                length = int.from_bytes(data[position + 2 : start - 4], "big")
                # §5.2: the shortest length encoding must be used, and 64 bits have MSB 0;
                # wsproto fails such frames with 1002.
                if length < (126 if encoded == 126 else 65536) or length >> 63:
                    break
            end = start + length
            if limit and length > limit:
                break  # wsproto's path closes with 1009
            if end > size:
                if first == 0x82 and limit:
                    # Collect this frame alone; text stays with wsproto, which rejects
                    # invalid UTF-8 as soon as it arrives (RFC 6455 §8.1, fail fast).
                    self._pending = bytearray(memoryview(data)[position:])
                    self.needed = end - position
                    return size
                break
            if length < _VIEW_FROM:
                payload = apply_mask(data[start:end], data[start - 4 : start])
            else:
                payload = apply_mask(memoryview(data)[start:end], data[start - 4 : start])
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
