"""The server side of an HTTP/2 connection (RFC 9113), sans-IO: bytes in, events and bytes out.

Our own state machine instead of the h2 library's: measured, h2's per-frame machinery
(frame objects, two state machines per stream, events, validation passes) was most of the
CPU of a request. This one parses frames straight from the bytes, keeps one small record
per stream, and builds the frames it sends as bytes. Header blocks are HPACK-coded by the
hpack library (§4.3). What the adapter decides (requests, limits, flow-control policy) is
not here: this class enforces the protocol's rules and reports what the client did.

Rule violations follow §5.4: a connection error raises :class:`ConnectionFault`; a stream
error queues RST_STREAM and reports :class:`StreamReset`, so the adapter drops the stream
as if the client had reset it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import hpack
from hpack.exceptions import HPACKError, OversizedHeaderListError

from gateway.protocols import http2_frames as f
from gateway.protocols.http2_events import (
    CONTROL,
    SETTINGS_CHANGED,
    ClientGoAway,
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from gateway.protocols.http2_frames import ConnectionFault, ErrorCode
from gateway.protocols.http2_peer_settings import PeerSettings
from gateway.protocols.http2_stream_record import StreamGone, StreamRecord

_CLOSED_MEMORY = 256  # closed streams remembered, to tell a late frame from a bad one (§5.1)


class ServerConnection:
    """One HTTP/2 connection's protocol state, server side."""

    def __init__(
        self,
        settings: dict[int, int],
        connection_window: int,
        *,
        upgrade_settings: bytes | None = None,
    ) -> None:
        self.local_initial_window = settings[f.INITIAL_WINDOW_SIZE]
        self.max_inbound_frame_size = settings[f.MAX_FRAME_SIZE]
        self._max_header_block = settings[f.MAX_HEADER_LIST_SIZE]
        self.streams: dict[int, StreamRecord] = {}
        # Recently closed stream id -> True if we reset it (its late frames are ignored).
        self._closed: dict[int, bool] = {}
        self.highest_inbound_stream_id = 0
        self.send_window = f.DEFAULT_WINDOW  # the peer's connection window for our DATA
        self.receive_window = self._connection_window = connection_window
        self._unacked = 0
        self._decoder = hpack.Decoder(max_header_list_size=settings[f.MAX_HEADER_LIST_SIZE])
        self._encoder = hpack.Encoder()
        self._peer = PeerSettings(self._encoder)
        self._buffer = b""
        self._preface_left = len(f.PREFACE)
        # A header block still arriving in CONTINUATION frames (§6.10).
        self._block_stream = 0
        self._block_flags = 0
        self._block: list[bytes] = []
        self._block_size = 0
        self._out: list[bytes | memoryview] = [f.settings_frame(settings)]
        # Where in ``_out`` the header of the last DATA frame queued is (-1: none, or sent),
        # and its stream: END_STREAM can still be set on it instead of an empty DATA frame.
        self._last_data = -1
        self._last_data_stream = 0
        if connection_window > f.DEFAULT_WINDOW:
            self._out.append(f.window_update_frame(0, connection_window - f.DEFAULT_WINDOW))
        if upgrade_settings is not None:
            # RFC 7540 §3.2: the Upgrade request is stream 1, half-closed (remote).
            self._peer.apply(f.parse_settings(upgrade_settings), self.streams)
            self.highest_inbound_stream_id = 1
            self.streams[1] = StreamRecord(self._peer.initial_window, 0, remote_open=False)

    @property
    def max_outbound_frame_size(self) -> int:
        """The client's SETTINGS_MAX_FRAME_SIZE: the largest frame we may send it (§4.2)."""
        return self._peer.max_frame_size

    # -- bytes out --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        self._last_data = -1
        return data

    def send_headers(self, stream_id: int, headers: Iterable[tuple[bytes, bytes]], *, end_stream: bool = False) -> None:
        record = self._sendable(stream_id)
        block = self._encoder.encode(headers)
        if self._last_data_stream == stream_id:
            self._last_data = -1  # trailers follow the DATA: END_STREAM goes on them
        self._out.append(f.headers_frames(stream_id, block, self._peer.max_frame_size, end_stream=end_stream))
        if end_stream:
            self._end_local(stream_id, record)

    def send_data(self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False) -> int:
        """``data`` (within both windows) as DATA frames; how many frames."""
        record = self._sendable(stream_id)
        size = len(data)
        if size > record.send_window or size > self.send_window:
            raise ValueError("DATA beyond the flow-control window")
        record.send_window -= size
        self.send_window -= size
        frame_size = self._peer.max_frame_size
        out = self._out
        if size <= frame_size:
            self._last_data, self._last_data_stream = len(out), stream_id
            out.append(f.frame_header(size, f.DATA, f.END_STREAM if end_stream else 0, stream_id))
            out.append(data)  # bytes or a memoryview slice, joined once
            frames = 1
        else:
            frames = 0
            for start in range(0, size, frame_size):
                piece = data[start : start + frame_size]
                last = end_stream and start + frame_size >= size
                self._last_data, self._last_data_stream = len(out), stream_id
                out.append(f.frame_header(len(piece), f.DATA, f.END_STREAM if last else 0, stream_id))
                out.append(piece)
                frames += 1
        if end_stream:
            self._end_local(stream_id, record)
        return frames

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM (§6.1): set on the stream's last DATA frame if it is still queued (and
        nothing of the stream after it), else an empty DATA frame."""
        index = self._last_data
        if index >= 0 and self._last_data_stream == stream_id:
            record = self._sendable(stream_id)
            header = self._out[index]
            assert isinstance(header, bytes)  # frame headers are bytes; payloads may be views
            self._out[index] = header[:4] + bytes((header[4] | f.END_STREAM,)) + header[5:]
            self._last_data = -1
            self._end_local(stream_id, record)
            return
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """RST_STREAM (§6.4); late frames the client sent before seeing it are ignored."""
        self._out.append(f.rst_stream_frame(stream_id, code))
        if self.streams.pop(stream_id, None) is not None:
            self._remember_closed(stream_id, reset_by_us=True)

    def acknowledge_received_data(self, size: int, stream_id: int) -> None:
        """``size`` bytes were consumed; WINDOW_UPDATE once half a window is (§6.9), batched."""
        self._unacked += size
        if self._unacked >= self._connection_window // 2:
            self._out.append(f.window_update_frame(0, self._unacked))
            self.receive_window += self._unacked
            self._unacked = 0
        record = self.streams.get(stream_id)
        if record is not None and record.remote_open:
            record.unacked += size
            if record.unacked >= self.local_initial_window // 2:
                self._out.append(f.window_update_frame(stream_id, record.unacked))
                record.receive_window += record.unacked
                record.unacked = 0

    def write_goaway(self, last_stream_id: int, code: ErrorCode) -> None:
        self._out.append(f.goaway_frame(last_stream_id, code))

    # -- what the adapter asks -----------------------------------------------------------

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many bytes of DATA may go out on ``stream_id`` now."""
        record = self.streams.get(stream_id)
        if record is None or not record.local_open:
            raise StreamGone(stream_id)
        return min(record.send_window, self.send_window)

    def remote_flow_control_window(self, stream_id: int) -> int:
        """How many bytes the client may still send on ``stream_id``."""
        record = self.streams.get(stream_id)
        if record is None:
            raise StreamGone(stream_id)
        return record.receive_window

    def is_open(self, stream_id: int) -> bool:
        """The client may still send on ``stream_id``."""
        record = self.streams.get(stream_id)
        return record is not None and record.remote_open

    def _sendable(self, stream_id: int) -> StreamRecord:
        record = self.streams.get(stream_id)
        if record is None or not record.local_open:
            raise StreamGone(stream_id)
        return record

    def _end_local(self, stream_id: int, record: StreamRecord) -> None:
        record.local_open = False
        if not record.remote_open:
            del self.streams[stream_id]
            self._remember_closed(stream_id, reset_by_us=False)

    def _remember_closed(self, stream_id: int, *, reset_by_us: bool) -> None:
        closed = self._closed
        closed[stream_id] = reset_by_us
        if len(closed) > _CLOSED_MEMORY:
            del closed[next(iter(closed))]

    def _stream_error(self, stream_id: int, code: ErrorCode, events: list[Event]) -> None:
        """A stream error (§5.4.2): RST_STREAM, and the adapter drops the stream."""
        opened = stream_id in self.streams
        self.reset_stream(stream_id, code)
        if opened:
            events.append(StreamReset(stream_id, code))

    # -- bytes in ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The events in ``data``; raises :class:`ConnectionFault` for a connection error."""
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos = 0
        end = len(data)
        if self._preface_left:
            pos = min(self._preface_left, end)
            offset = len(f.PREFACE) - self._preface_left
            if data[:pos] != f.PREFACE[offset : offset + pos]:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            self._preface_left -= pos
        events: list[Event] = []
        max_frame = self.max_inbound_frame_size
        while end - pos >= 9:
            header = int.from_bytes(data[pos : pos + 9], "big")
            length = header >> 48
            if length > max_frame:
                raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")  # §4.2
            if end - pos - 9 < length:
                break
            frame_type = (header >> 40) & 0xFF
            flags = (header >> 32) & 0xFF
            stream_id = header & 0x7FFFFFFF
            payload = data[pos + 9 : pos + 9 + length]
            pos += 9 + length
            if self._block_stream and frame_type != f.CONTINUATION:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "header block interrupted")  # §6.10
            if frame_type == f.DATA:
                self._on_data(stream_id, flags, payload, events)
            elif frame_type == f.HEADERS:
                self._on_headers(stream_id, flags, payload, events)
            elif frame_type == f.CONTINUATION:
                self._on_continuation(stream_id, flags, payload, events)
            elif frame_type == f.WINDOW_UPDATE:
                self._on_window_update(stream_id, payload, events)
            elif frame_type == f.RST_STREAM:
                self._on_rst_stream(stream_id, payload, events)
            elif frame_type == f.SETTINGS:
                self._on_settings(stream_id, flags, payload, events)
            elif frame_type == f.PING:
                if stream_id or length != 8:
                    raise f.fault_for(stream_id, "PING")
                if not flags & f.ACK:
                    self._out.append(f.frame_header(8, f.PING, f.ACK, 0) + payload)
                    events.append(CONTROL)
            elif frame_type == f.PRIORITY:
                self._on_priority(stream_id, payload, events)
            elif frame_type == f.GOAWAY:
                if stream_id or length < 8:
                    raise f.fault_for(stream_id, "GOAWAY")
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                events.append(ClientGoAway(last, int.from_bytes(payload[4:8], "big")))
            elif frame_type == f.PUSH_PROMISE:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")  # §8.4
            else:
                events.append(CONTROL)  # §4.1: unknown types are ignored (but counted)
        if pos < end:
            self._buffer = data[pos:]
        return events

    def _on_data(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")  # §6.1
        length = len(payload)
        data = f.unpadded(flags, payload)
        self.receive_window -= length
        if self.receive_window < 0:
            raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        record = self.streams.get(stream_id)
        if record is None or not record.remote_open:
            self._unexpected_frame(stream_id, "DATA", events)
            self.acknowledge_received_data(length, 0)  # nobody will read it (§6.9)
            return
        record.receive_window -= length
        if record.receive_window < 0:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, events)
            self.acknowledge_received_data(length, 0)
            return
        ended = bool(flags & f.END_STREAM)
        if record.body_left >= 0:
            # §8.1.1: a body longer or shorter than its content-length is malformed.
            record.body_left -= len(data)
            if record.body_left < 0 or (ended and record.body_left):
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)
                self.acknowledge_received_data(length, 0)
                return
        events.append(DataReceived(stream_id, data, length, ended))
        if ended:
            self._end_remote(stream_id, record, events)

    def _on_headers(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id or not stream_id & 1:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")  # §5.1.1
        fragment = f.unpadded(flags, payload)
        if flags & f.PRIORITY_FLAG:
            if len(fragment) < 5:
                raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            depends_on = int.from_bytes(fragment[:4], "big") & 0x7FFFFFFF
            fragment = fragment[5:]
            if depends_on == stream_id:
                self._decode(fragment)  # the block still updates the HPACK table (§4.3)
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)  # §5.3.1
                return
        if flags & f.END_HEADERS:
            self._header_block(stream_id, flags, fragment, events)
        else:
            self._block_stream, self._block_flags = stream_id, flags
            self._block = [fragment]
            self._block_size = len(fragment)
            self._check_block_size()

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id != self._block_stream or not stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")  # §6.10
        self._block.append(payload)
        self._block_size += len(payload)
        self._check_block_size()
        if flags & f.END_HEADERS:
            block = b"".join(self._block)
            self._block_stream, self._block = 0, []
            self._header_block(stream_id, self._block_flags, block, events)

    def _check_block_size(self) -> None:
        # A CONTINUATION flood would be buffered until its end: cap the compressed size.
        if self._block_size > self._max_header_block:
            raise ConnectionFault(ErrorCode.ENHANCE_YOUR_CALM, "header block larger than --h2-max-header-list-size")

    def _header_block(self, stream_id: int, flags: int, block: bytes, events: list[Event]) -> None:
        ended = bool(flags & f.END_STREAM)
        record = self.streams.get(stream_id)
        if record is None and stream_id > self.highest_inbound_stream_id:
            headers = self._decode(block)
            self.highest_inbound_stream_id = stream_id
            record = StreamRecord(self._peer.initial_window, self.local_initial_window, remote_open=True)
            record.body_left = f.declared_length(headers)
            self.streams[stream_id] = record
            events.append(RequestReceived(stream_id, headers, ended))
        elif record is not None and record.remote_open:
            headers = self._decode(block)
            if not ended:
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)  # §8.1: trailers end it
                return
            events.append(TrailersReceived(stream_id, headers))
        else:
            self._decode(block)
            self._unexpected_frame(stream_id, "HEADERS", events)
            return
        if ended:
            if record.body_left > 0:  # END_STREAM on the HEADERS of a request that promised a body
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)
                return
            self._end_remote(stream_id, record, events)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return cast("list[tuple[bytes, bytes]]", self._decoder.decode(block, raw=True))
        except OversizedHeaderListError as exc:
            raise ConnectionFault(ErrorCode.ENHANCE_YOUR_CALM, f"header list too large: {exc}") from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError, ValueError) as exc:
            raise ConnectionFault(ErrorCode.COMPRESSION_ERROR, f"undecodable header block: {exc}") from exc

    def _end_remote(self, stream_id: int, record: StreamRecord, events: list[Event]) -> None:
        record.remote_open = False
        events.append(StreamEnded(stream_id))
        if not record.local_open:
            del self.streams[stream_id]
            self._remember_closed(stream_id, reset_by_us=False)

    def _unexpected_frame(self, stream_id: int, kind: str, events: list[Event]) -> None:
        """DATA or HEADERS on a stream that is not open for the client to send on (§5.1)."""
        if stream_id > self.highest_inbound_stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"{kind} on idle stream {stream_id}")
        if stream_id in self.streams:  # half-closed (remote): a stream error
            self._stream_error(stream_id, ErrorCode.STREAM_CLOSED, events)
            return
        reset_by_us = self._closed.get(stream_id)
        if reset_by_us:
            return  # we reset it; the client sent this before it knew (§5.1, closed)
        if reset_by_us is None:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"{kind} on stream {stream_id}, below the last one")
        raise ConnectionFault(ErrorCode.STREAM_CLOSED, f"{kind} on closed stream {stream_id}")

    def _on_window_update(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size")  # §6.9
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not stream_id:
            if not increment:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "connection window past 2^31-1")  # §6.9.1
            events.append(WindowUpdated(0))
            return
        if stream_id > self.highest_inbound_stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {stream_id}")
        record = self.streams.get(stream_id)
        if record is None:
            return  # closed: WINDOW_UPDATEs may cross our END_STREAM or RST_STREAM (§6.9)
        if not increment:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)
            return
        record.send_window += increment
        if record.send_window > f.MAX_WINDOW:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, events)
            return
        events.append(WindowUpdated(stream_id))

    def _on_rst_stream(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of a wrong size")
        if not stream_id or stream_id > self.highest_inbound_stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")  # §6.4
        if self.streams.pop(stream_id, None) is not None:
            self._remember_closed(stream_id, reset_by_us=False)
            events.append(StreamReset(stream_id, int.from_bytes(payload, "big")))

    def _on_priority(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")  # §6.3
        if len(payload) != 5:
            # §6.3 allows a stream error; one malformed frame is reason enough to stop.
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY of a wrong size")
        if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == stream_id:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, events)  # §5.3.1
            return
        events.append(CONTROL)

    def _on_settings(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")  # §6.5
        if flags & f.ACK:
            if payload:
                raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of a wrong size")
        self._peer.apply(f.parse_settings(payload), self.streams)
        self._out.append(f.frame_header(0, f.SETTINGS, f.ACK, 0))
        events.append(SETTINGS_CHANGED)
