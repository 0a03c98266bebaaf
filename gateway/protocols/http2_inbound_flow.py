"""Request-body flow control for HTTP/2 (RFC 9113 §6.9): window follows the app.

The window a client may fill is handed back only as the app reads (``consumed``), so a
stream buffers at most its window whatever the client sends; bytes nobody will read
(padding, DATA for a finished or reset stream) are acknowledged at once. The state machine
batches the WINDOW_UPDATEs (one per half window). The ``--body-timeout`` clock of a stream
restarts when its app has taken what came (see :mod:`http2_body_timeout`).
"""

from __future__ import annotations

from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_connection import ServerConnection


class InboundFlow:
    """Hands request-body window back to the client of one connection."""

    __slots__ = ("_body_timeout", "_connection")

    def __init__(self, connection: ServerConnection, body_timeout: BodyTimeout) -> None:
        self._connection = connection
        self._body_timeout = body_timeout

    def acknowledge(self, size: int, stream_id: int) -> None:
        """``size`` bytes on ``stream_id`` are consumed (read, or dropped unread)."""
        if size:
            self._connection.acknowledge_received_data(size, stream_id)

    def consumed(self, stream_id: int, size: int) -> None:
        """The app has read ``size`` bytes of ``stream_id``'s body."""
        connection = self._connection
        connection_window_shut = connection.receive_window <= 0
        self.acknowledge(size, stream_id)
        # The client's clock for --body-timeout starts when the app has taken what came,
        # not at each DATA frame: until then a silent client is waiting for us, and this
        # way DATA frames cost no clock read (an empty one never restarts it).
        body_timeout = self._body_timeout
        body_timeout.restart(stream_id)
        if connection_window_shut and connection.receive_window > 0:
            body_timeout.restart_all()
