"""Log lines for refused requests and connections, a few per interval however many there are.

A flood of refused requests is what the limits exist for; one log line each would turn the
flood into a disk-filling log flood. The first refusal of a kind is logged at once; the ones
that follow within ``interval`` seconds are counted and summed up in one line when the
interval ends (a timer, so the last burst of a flood is reported too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from gateway.logs import address_label

log = logging.getLogger("gateway.error")

# Seconds between two log lines of one kind of refusal.
LOG_INTERVAL = 10.0


def escaped_address(address: Sequence[Any] | None) -> str:
    """The client address as log lines show it, escaped by ``logs.address_label``.

    The host may come from a client's ``X-Forwarded-For`` or ``Forwarded`` header (once
    proxy headers are trusted), so it must not put a line break or an escape sequence into
    the log (the class of CVE-2020-7694).
    """
    return address_label(address)


class RejectionLog:
    """Rate-limited WARNING lines for one kind of refusal (``what`` names the option)."""

    __slots__ = ("_interval", "_last_address", "_suppressed", "_timer", "total", "what")

    def __init__(self, what: str, interval: float = LOG_INTERVAL) -> None:
        self.what = what
        # Every refusal, logged or not (read once a second for --metrics-bind).
        self.total = 0
        self._interval = interval
        self._suppressed = 0
        self._last_address = "-"
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, address: Sequence[Any] | None, detail: str) -> None:
        """Note one refusal from ``address``; log it now or in the next summary line."""
        self.total += 1
        if self._timer is not None:
            self._suppressed += 1
            self._last_address = escaped_address(address)
            return
        log.warning("%s - refused: %s (%s)", escaped_address(address), detail, self.what)
        self._start_interval()

    def _start_interval(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop (unit tests of the limiter objects)
            return
        self._timer = loop.call_later(self._interval, self._interval_over)

    def _interval_over(self) -> None:
        self._timer = None
        if self._suppressed:
            log.warning(
                "%d more refused in the last %gs (%s), the latest from %s",
                self._suppressed,
                self._interval,
                self.what,
                self._last_address,
            )
            self._suppressed = 0
            self._start_interval()

    def close(self) -> None:
        """Stop the timer (server shutdown); a pending summary is written now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if self._suppressed:
                log.warning("%d more refused (%s), the latest from %s", self._suppressed, self.what, self._last_address)
                self._suppressed = 0
