"""Per-connection flood accounting for HTTP/2.

HTTP/2 lets a peer make the server work with frames that cost the peer almost nothing:
resetting streams right after opening them (Rapid Reset, CVE-2023-44487), provoking the
server into resetting them (MadeYouReset, CVE-2025-8671), or sending PING, SETTINGS,
PRIORITY, WINDOW_UPDATE and empty DATA frames in bulk (RFC 9113 §10.5). Each kind is counted
over 10-second spans; past its limit the adapter sends GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import time

SPAN = 10.0


class FloodGuard:
    """Counts cheap-for-the-peer events on one connection."""

    __slots__ = ("_control", "_credit", "_max_control", "_max_resets", "_resets", "_span_start")

    def __init__(self, max_resets: int, max_control_frames: int) -> None:
        self._max_resets = max_resets
        self._max_control = max_control_frames
        self._span_start = time.monotonic()
        self._resets = 0
        self._control = 0
        self._credit = 0

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self._span_start >= SPAN:
            self._span_start = now
            self._resets = 0
            self._control = 0
            self._credit = 0

    def reset(self) -> bool:
        """Count one stream reset (either side); True when the connection is past its limit."""
        self._roll()
        self._resets += 1
        return self._resets > self._max_resets

    def control_frame(self, count: int = 1) -> bool:
        """Count control frames; True when the connection is past its limit.

        WINDOW_UPDATEs are a legitimate answer to the DATA we send, so each DATA frame sent
        buys room for more control frames (see :meth:`data_sent`).
        """
        self._roll()
        self._control += count
        return self._control > self._max_control + self._credit

    def request_opened(self) -> None:
        """A request was accepted: browsers put priority in its HEADERS."""
        self._credit += 1

    def data_sent(self, frames: int) -> None:
        """We sent ``frames`` DATA frames: a peer may answer each with two WINDOW_UPDATEs.

        One for the stream and one for the connection (RFC 9113 §6.9), as a client that
        hands back every frame it reads does.
        """
        self._credit += 2 * frames
