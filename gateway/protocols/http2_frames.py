"""HTTP/2 frame layout (RFC 9113 §4, §6): codes, a frame header, the frames the server writes.

Frames are built as bytes directly: a 9-byte header (§4.1) and the payload. Everything the
server sends goes through these few functions, and nothing here keeps state.
"""

from __future__ import annotations

from enum import IntEnum

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LENGTH = 9
MAX_WINDOW = 2**31 - 1  # §6.9.1
DEFAULT_WINDOW = 65535  # §6.9.2
DEFAULT_FRAME_SIZE = 16384  # §4.2
MAX_FRAME_SIZE_LIMIT = 2**24 - 1  # §6.5.2

# Frame types (§6)
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS identifiers (§6.5.2)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
ENABLE_CONNECT_PROTOCOL = 0x8  # RFC 8441 §3


class ErrorCode(IntEnum):
    """Error codes (§7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ConnectionFault(Exception):
    """A connection error: GOAWAY with ``code``, then close."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return (length << 48 | frame_type << 40 | flags << 32 | stream_id).to_bytes(9, "big")


def settings_frame(settings: dict[int, int]) -> bytes:
    payload = b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in settings.items())
    return frame_header(len(payload), SETTINGS, 0, 0) + payload


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS payload; its length is checked by the caller."""
    return [
        (int.from_bytes(payload[i : i + 2], "big"), int.from_bytes(payload[i + 2 : i + 6], "big"))
        for i in range(0, len(payload), 6)
    ]


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + increment.to_bytes(4, "big")


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + code.to_bytes(4, "big")


def goaway_frame(last_stream_id: int, code: int) -> bytes:
    return frame_header(8, GOAWAY, 0, 0) + last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big")


def headers_frames(stream_id: int, block: bytes, max_frame_size: int, *, end_stream: bool) -> bytes:
    """A header block as HEADERS (plus CONTINUATIONs past ``max_frame_size``, §6.10)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame_size:
        return frame_header(len(block), HEADERS, flags | END_HEADERS, stream_id) + block
    parts = []
    for start in range(0, len(block), max_frame_size):
        piece = block[start : start + max_frame_size]
        last = start + max_frame_size >= len(block)
        frame_type = HEADERS if start == 0 else CONTINUATION
        piece_flags = (flags if start == 0 else 0) | (END_HEADERS if last else 0)
        parts.append(frame_header(len(piece), frame_type, piece_flags, stream_id) + piece)
    return b"".join(parts)


def declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The request's content-length, or -1 (none, or not a number: the adapter answers 400)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1


def unpadded(flags: int, payload: bytes) -> bytes:
    """The payload without its padding (§6.1, §6.2)."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame")
    return payload[1 : len(payload) - payload[0]]


def fault_for(stream_id: int, kind: str) -> ConnectionFault:
    if stream_id:
        return ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"{kind} on a stream")
    return ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, f"{kind} of a wrong size")
