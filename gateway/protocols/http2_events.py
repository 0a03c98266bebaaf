"""What :class:`~gateway.protocols.http2_connection.ServerConnection` reports the client did.

Small slotted records, one per kind; the adapter dispatches on their exact type.
"""

from __future__ import annotations


class RequestReceived:
    """A request's header block opened ``stream_id``; ``stream_ended`` if it has no body."""

    __slots__ = ("headers", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]], stream_ended: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended = stream_ended


class DataReceived:
    """Request body bytes; ``flow_controlled_length`` counts padding too (§6.1)."""

    __slots__ = ("data", "flow_controlled_length", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int, stream_ended: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.stream_ended = stream_ended


class TrailersReceived:
    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id = stream_id
        self.headers = headers


class StreamEnded:
    """The client's half of ``stream_id`` is done (END_STREAM)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset:
    """``stream_id`` is gone: the client reset it, or broke a rule on it (a stream error)."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


class WindowUpdated:
    """More room to send on ``stream_id`` (0: the connection)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class ClientGoAway:
    """The client sent GOAWAY (§6.8)."""

    __slots__ = ("error_code", "last_stream_id")

    def __init__(self, last_stream_id: int, error_code: int) -> None:
        self.last_stream_id = last_stream_id
        self.error_code = error_code


class ControlFrame:
    """A frame that costs the client nothing and us some work (PING, PRIORITY, unknown types,
    SETTINGS): counted by the flood guard (§10.5). ``settings`` when SETTINGS changed the
    stream windows."""

    __slots__ = ("settings",)

    def __init__(self, *, settings: bool = False) -> None:
        self.settings = settings


CONTROL = ControlFrame()
SETTINGS_CHANGED = ControlFrame(settings=True)

Event = (
    RequestReceived
    | DataReceived
    | TrailersReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | ClientGoAway
    | ControlFrame
)
