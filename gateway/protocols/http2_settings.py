"""The SETTINGS the HTTP/2 adapter advertises (RFC 9113 §6.5.2), and the connection it starts.

One place for what we tell the client; :class:`gateway.protocols.http2.HTTP2Protocol` calls
:func:`start_connection`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from gateway.protocols import http2_frames as f
from gateway.protocols.http2_connection import ServerConnection

if TYPE_CHECKING:
    from gateway.config import Config

# Our receive window for the whole connection (RFC 9113 §6.9.2 fixes its start at 65,535).
_MIN_CONNECTION_WINDOW = 1024 * 1024


def start_connection(config: Config, upgrade_settings: bytes | None) -> ServerConnection:
    """A server-side connection with our SETTINGS and connection window queued to send.

    ``upgrade_settings`` is the client's ``HTTP2-Settings`` value (base64url, checked by
    the HTTP/1.1 side) after an h2c Upgrade (RFC 7540 §3.2), or None when the connection
    started as HTTP/2. SETTINGS_MAX_CONCURRENT_STREAMS is advertised, and the adapter
    refuses just the extra stream (REFUSED_STREAM, §5.1.2) rather than failing the connection.
    """
    settings = {
        f.MAX_CONCURRENT_STREAMS: config.h2_max_concurrent_streams,
        f.MAX_HEADER_LIST_SIZE: config.h2_max_header_list_size,
        f.INITIAL_WINDOW_SIZE: config.h2_initial_window_size,
        f.MAX_FRAME_SIZE: config.h2_max_frame_size,
        f.ENABLE_PUSH: 0,
        # RFC 8441 §3: the extended CONNECT that carries WebSockets over a stream.
        f.ENABLE_CONNECT_PROTOCOL: 1,
    }
    payload = None
    if upgrade_settings is not None:
        payload = base64.urlsafe_b64decode(upgrade_settings + b"=" * (-len(upgrade_settings) % 4))
    connection_window = max(config.h2_initial_window_size, _MIN_CONNECTION_WINDOW)
    return ServerConnection(settings, connection_window, upgrade_settings=payload)
