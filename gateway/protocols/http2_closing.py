"""How an HTTP/2 connection ends: GOAWAY, then close, never held open by a client that stops reading.

A graceful end (idle, shutdown, the client's own GOAWAY) sends GOAWAY NO_ERROR with the
last stream id once no stream is open (RFC 9113 §6.8); a connection error sends GOAWAY with
its code at once and ends every stream (§5.4.1). ``close()`` lets queued bytes go first, but
a client that never reads them is dropped after ``h2_send_timeout``.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.events import ConnectionInfo
from gateway.logs import address_label, escape
from gateway.protocols.common import Transport
from gateway.protocols.http2_body_timeout import BodyTimeout
from gateway.protocols.http2_connection import ServerConnection
from gateway.protocols.http2_frames import ErrorCode, goaway_frame
from gateway.protocols.http2_stream_table import StreamTable

log = logging.getLogger("gateway.error")


class ConnectionClosing:
    """Ends one HTTP/2 connection; ``last_stream_id`` is the highest stream the adapter saw."""

    __slots__ = (
        "_abort_timer",
        "_body_timeout",
        "_connection",
        "_info",
        "_send_timeout",
        "_table",
        "_transport",
        "last_stream_id",
    )

    def __init__(
        self,
        connection: ServerConnection,
        transport: Transport,
        table: StreamTable,
        body_timeout: BodyTimeout,
        info: ConnectionInfo,
        send_timeout: float,
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._table = table
        self._body_timeout = body_timeout
        self._info = info
        self._send_timeout = send_timeout
        self._abort_timer: asyncio.TimerHandle | None = None
        self.last_stream_id = 0

    def connection_error(self, error_code: ErrorCode, reason: str) -> None:
        """GOAWAY with ``error_code``, end every stream, close. What was queued is moot now."""
        if self._table.closing:
            return
        log.info("%s - HTTP/2 connection closed: %s", address_label(self._info.client), escape(reason))
        self._connection.data_to_send()
        self.write_goaway(error_code)
        self.end_streams()

    def end_streams(self, *, abort: bool = False) -> None:
        """Every stream's app sees ``http.disconnect`` and is cancelled; then close (or abort)."""
        self._table.end_all(cancel=True)
        if abort and not self._table.closing:
            self._table.closing = True
            self._transport.abort()
        self.close()

    def close(self) -> None:
        self._body_timeout.close()
        if not self._table.closing:
            self._flush()  # e.g. the END_STREAM of the last response before a GOAWAY close
            self._table.closing = True
            self._transport.close()
            # close() waits for queued bytes to be read; a peer that never reads them must
            # not keep the connection (and its memory) forever.
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(self._send_timeout, self._transport.abort)

    def close_gracefully(self) -> None:
        """No stream is open: GOAWAY NO_ERROR with the last stream id, then close (§6.8)."""
        if self._table.closing:
            return
        self._flush()
        self.write_goaway(ErrorCode.NO_ERROR)
        self.close()

    def cut_off(self) -> None:
        """The graceful timeout passed: RST_STREAM CANCEL on each open stream, then GOAWAY.

        The client learns which requests did not complete; the connection drops right after.
        """
        if self._table.closing:
            return
        for stream_id, state in list(self._table.items()):
            state.stream.cancel()
            state.wake()
            self._connection.reset_stream(stream_id, ErrorCode.CANCEL)
        self._flush()
        self.write_goaway(ErrorCode.NO_ERROR)
        self._transport.write(b"", flush=True)

    def lost(self) -> None:
        """The socket is gone: every open stream's app sees ``http.disconnect``."""
        self._table.closing = True
        self._body_timeout.close()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        self._table.end_all(cancel=False)

    def write_goaway(self, error_code: ErrorCode) -> None:
        self._transport.write(goaway_frame(self.last_stream_id, error_code))

    def _flush(self) -> None:
        output = self._connection.data_to_send()
        if output:
            self._transport.write(output)
