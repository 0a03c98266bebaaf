"""What the client's SETTINGS change in how we send (RFC 9113 §6.5.2).

Its frame size limit, its initial stream window (which moves every open stream's window,
§6.9.2) and its HPACK table size (our encoder's, RFC 7541 §4.2). Invalid values are
connection errors; unknown identifiers are ignored.
"""

from __future__ import annotations

import hpack

from gateway.protocols import http2_frames as f
from gateway.protocols.http2_frames import ConnectionFault, ErrorCode
from gateway.protocols.http2_stream_record import StreamRecord


class PeerSettings:
    """The client's settings that bind what we send."""

    __slots__ = ("_encoder", "initial_window", "max_frame_size")

    def __init__(self, encoder: hpack.Encoder) -> None:
        self._encoder = encoder
        self.initial_window = f.DEFAULT_WINDOW
        self.max_frame_size = f.DEFAULT_FRAME_SIZE

    def apply(self, settings: list[tuple[int, int]], streams: dict[int, StreamRecord]) -> None:
        """The client's SETTINGS (§6.5.2); unknown identifiers are ignored."""
        for key, value in settings:
            if key == f.HEADER_TABLE_SIZE:
                self._encoder.header_table_size = value
            elif key == f.ENABLE_PUSH:
                if value > 1:
                    raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
            elif key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1")
                delta = value - self.initial_window
                self.initial_window = value
                for record in streams.values():  # §6.9.2: every open stream's window moves
                    record.send_window += delta
                    if record.send_window > f.MAX_WINDOW:
                        raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "a stream window past 2^31-1")
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
                    raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.max_frame_size = value
            elif key == f.ENABLE_CONNECT_PROTOCOL and value > 1:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1")
