"""The h2 state machine as the HTTP/2 adapter uses it, and the SETTINGS it advertises.

One place for what we tell the client (RFC 9113 §6.5.2) and for the h2 options that differ
from its defaults; :class:`gateway.protocols.http2.HTTP2Protocol` calls :func:`start_h2`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.settings

if TYPE_CHECKING:
    from gateway.config import Config

_SettingCodes = h2.settings.SettingCodes
# h2 enforces SETTINGS_MAX_CONCURRENT_STREAMS as a connection error; RFC 9113 §5.1.2 lets
# the server refuse just the extra stream, which the adapter does itself (REFUSED_STREAM).
_UNENFORCED_STREAM_LIMIT = 2**31 - 1
# Our receive window for the whole connection (RFC 9113 §6.9.2 fixes its start at 65,535).
_MIN_CONNECTION_WINDOW = 1024 * 1024


def start_h2(config: Config, upgrade_settings: bytes | None) -> h2.connection.H2Connection:
    """A server-side h2 connection with our SETTINGS and connection window queued to send.

    ``upgrade_settings`` is the client's ``HTTP2-Settings`` after an h2c Upgrade (RFC 7540
    §3.2), or None when the connection started as HTTP/2.
    """
    h2_connection = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # Checked by http2_headers in one cheaper pass, as stream errors.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    settings = {
        _SettingCodes.MAX_CONCURRENT_STREAMS: config.h2_max_concurrent_streams,
        _SettingCodes.MAX_HEADER_LIST_SIZE: config.h2_max_header_list_size,
        _SettingCodes.INITIAL_WINDOW_SIZE: config.h2_initial_window_size,
        _SettingCodes.MAX_FRAME_SIZE: config.h2_max_frame_size,
        _SettingCodes.ENABLE_PUSH: 0,
        # RFC 8441 §3: the extended CONNECT that carries WebSockets over a stream.
        _SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
    }
    h2_connection.local_settings = h2.settings.Settings(client=False, initial_values=settings)
    if upgrade_settings is None:
        h2_connection.initiate_connection()
    else:
        h2_connection.initiate_upgrade_connection(upgrade_settings)
    # The SETTINGS frame above advertises our values; from here h2 works with them as
    # current ones, except for the stream limit that we enforce per stream.
    settings[_SettingCodes.MAX_CONCURRENT_STREAMS] = _UNENFORCED_STREAM_LIMIT
    h2_connection.local_settings = h2.settings.Settings(client=False, initial_values=settings)
    h2_connection.max_inbound_frame_size = config.h2_max_frame_size
    h2_connection.decoder.max_header_list_size = config.h2_max_header_list_size
    connection_window = max(config.h2_initial_window_size, _MIN_CONNECTION_WINDOW)
    h2_connection.increment_flow_control_window(connection_window - 65535)
    return h2_connection
