"""Walks the frame headers of the bytes a client sends, before h2 parses them (RFC 9113 §4.1).

Two pieces of the protocol are ours rather than h2's, and both need to see frame boundaries:

- A client's GOAWAY (§6.8). h2's state machine closes the whole connection when it receives
  one, so the responses to streams the client had already opened could no longer be sent,
  nor its PINGs answered. The RFC says the opposite: GOAWAY stops *new* streams, and the
  ones already open are finished. So a well-formed GOAWAY is taken out of the byte stream
  here and handed to the adapter; h2 never sees it. A malformed one (on a stream other than
  0, shorter than 8 bytes, larger than our frame size, or in the middle of a header block)
  is left in for h2, which raises the connection error the RFC asks for.
- A SETTINGS ACK with a payload, a FRAME_SIZE_ERROR (§6.5) that h2 reports as a generic
  PROTOCOL_ERROR.
- The size of a header block still being assembled from CONTINUATION frames (§6.10). h2
  buffers such a block until its END_HEADERS and exposes no size for it, so its compressed
  size is counted here, and a block past the limit is refused before it is buffered.

Cost: a few integer reads per frame; payload bytes pass through as slices of the input, and
only a frame header split across two reads (or a GOAWAY not yet complete) is held back.
"""

from __future__ import annotations

from typing import NamedTuple

PREFACE_LENGTH = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (§3.4), checked by h2
FRAME_HEADER_LENGTH = 9
_HEADERS = 0x1
_PUSH_PROMISE = 0x5
_SETTINGS = 0x4
_GOAWAY = 0x7
_CONTINUATION = 0x9
_END_HEADERS = 0x4
_ACK = 0x1
_FRAME_SIZE_ERROR = 0x6
_ENHANCE_YOUR_CALM = 0xB


class ClientGoAway(NamedTuple):
    """A well-formed GOAWAY from the client."""

    last_stream_id: int
    error_code: int


class FrameRejected(Exception):
    """A connection error found here; ``error_code`` is the RFC's code for it (§7)."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code


class FrameScanner:
    """Splits the client's bytes into runs for h2 and the GOAWAY frames the adapter owns."""

    __slots__ = ("_block_size", "_frame_left", "_held", "_in_block", "_max_block", "_max_frame", "_preface_left")

    def __init__(self, max_header_block: int, max_frame_size: int) -> None:
        self._max_block = max_header_block
        self._max_frame = max_frame_size
        self._preface_left = PREFACE_LENGTH
        self._frame_left = 0  # payload bytes of the current frame still to pass through
        self._held = b""  # an incomplete frame header, or an incomplete GOAWAY
        self._in_block = False  # a HEADERS frame without END_HEADERS was seen
        self._block_size = 0

    def scan(self, data: bytes) -> list[bytes | ClientGoAway]:
        """``data`` as runs of bytes for h2, in order, with the client's GOAWAYs between them.

        Raises :class:`FrameRejected` for a header block past the limit (ENHANCE_YOUR_CALM)
        and a SETTINGS ACK with a payload (FRAME_SIZE_ERROR).
        """
        if self._held:
            data = self._held + data
            self._held = b""
        end = len(data)
        pos = 0
        if self._preface_left:
            pos = min(self._preface_left, end)
            self._preface_left -= pos
        parts: list[bytes | ClientGoAway] = []
        run_start = 0
        while pos < end:
            if self._frame_left:
                step = min(self._frame_left, end - pos)
                self._frame_left -= step
                pos += step
                continue
            if end - pos < FRAME_HEADER_LENGTH:
                self._held = data[pos:]
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            frame_type = data[pos + 3]
            if frame_type == _GOAWAY and self._owns_goaway(data, pos, length):
                if end - pos < FRAME_HEADER_LENGTH + length:
                    self._held = data[pos:]
                    break
                if pos > run_start:
                    parts.append(data[run_start:pos])
                body = pos + FRAME_HEADER_LENGTH
                last_stream_id = int.from_bytes(data[body : body + 4], "big") & 0x7FFFFFFF
                parts.append(ClientGoAway(last_stream_id, int.from_bytes(data[body + 4 : body + 8], "big")))
                pos = run_start = body + length
                continue
            if frame_type == _HEADERS or frame_type == _PUSH_PROMISE:
                self._block_size = length
                self._in_block = not data[pos + 4] & _END_HEADERS
            elif frame_type == _CONTINUATION:
                self._block_size += length
                self._in_block = not data[pos + 4] & _END_HEADERS
            elif frame_type == _SETTINGS and length and data[pos + 4] & _ACK:
                raise FrameRejected(_FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            if self._in_block and self._block_size > self._max_block:
                raise FrameRejected(_ENHANCE_YOUR_CALM, "header block larger than --h2-max-header-list-size")
            self._frame_left = length
            pos += FRAME_HEADER_LENGTH
        if pos > run_start:
            parts.append(data[run_start : min(pos, end)])
        return parts

    def _owns_goaway(self, data: bytes, pos: int, length: int) -> bool:
        """A GOAWAY the RFC accepts; anything else goes to h2 for its connection error."""
        if self._in_block or not 8 <= length <= self._max_frame:
            return False
        return not int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
