"""Response DATA for HTTP/2 within the client's flow-control windows (RFC 9113 §6.9).

DATA never exceeds the stream's and the connection's windows; the state machine cuts it at
the client's SETTINGS_MAX_FRAME_SIZE (§4.2). A sender whose window stays shut for
``h2_send_timeout`` seconds gives up on that stream (``on_window_shut``); a client that does
not read its socket for as long loses the connection (``on_peer_stalled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.events import FileBody
from gateway.protocols.common import Transport, read_file_chunks
from gateway.protocols.http2_connection import ServerConnection
from gateway.protocols.http2_limits import FloodGuard
from gateway.protocols.http2_stream_table import StreamState, StreamTable


class DataSender:
    """Sends the response bodies of one connection's streams."""

    __slots__ = (
        "_batch_limit",
        "_connection",
        "_flood",
        "_on_peer_stalled",
        "_on_window_shut",
        "_send_timeout",
        "_table",
        "_transport",
    )

    def __init__(
        self,
        connection: ServerConnection,
        transport: Transport,
        table: StreamTable,
        flood: FloodGuard,
        *,
        batch_limit: int,
        send_timeout: float,
        on_window_shut: Callable[[int], None],
        on_peer_stalled: Callable[[int], None],
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._table = table
        self._flood = flood
        self._batch_limit = batch_limit
        self._send_timeout = send_timeout
        self._on_window_shut = on_window_shut
        self._on_peer_stalled = on_peer_stalled

    async def send(self, stream_id: int, data: bytes) -> None:
        """``data`` as DATA frames, waiting for window as needed. Raises ``StreamGone``.

        The caller flushes the connection's output afterwards (by the end of the loop turn).
        """
        connection = self._connection
        transport = self._transport
        table = self._table
        # A memoryview, so that slicing a large body into frames copies each byte once.
        view = memoryview(data) if len(data) > connection.max_outbound_frame_size else data
        offset, end = 0, len(data)
        while offset < end:
            state = table.get(stream_id)
            if state is None or table.closing:
                return
            window = connection.local_flow_control_window(stream_id)
            if window <= 0:
                await self._wait_for_window(state, stream_id)
                continue
            size = min(window, end - offset, self._batch_limit)
            self._flood.data_sent(connection.send_data(stream_id, view[offset : offset + size]))
            offset += size
            # The last piece stays queued in the connection until the caller flushes: if the
            # response ends right after, END_STREAM goes on its last DATA frame (§6.1).
            if offset < end or transport.write_paused:
                transport.write(connection.data_to_send())
                if transport.write_paused:
                    await self._drain(stream_id)

    async def send_file(self, event: FileBody) -> None:
        """A file as DATA frames: one chunk read at a time, each sent within the windows."""
        stream_id = event.stream_id
        table = self._table
        for chunk in read_file_chunks(event.file, event.offset, event.count, self._batch_limit):
            if table.closing or stream_id not in table:
                return  # reset or gone: stop reading the file
            await self.send(stream_id, chunk)

    async def _wait_for_window(self, state: StreamState, stream_id: int) -> None:
        # The client's window is shut: wait for a WINDOW_UPDATE, but not forever (§6.9).
        state.waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(state.waiter, self._send_timeout)
        except TimeoutError:
            self._on_window_shut(stream_id)
        finally:
            state.waiter = None

    async def _drain(self, stream_id: int) -> None:
        try:
            await asyncio.wait_for(self._transport.drain(), self._send_timeout)
        except TimeoutError:
            self._on_peer_stalled(stream_id)  # no stream can make progress
