"""Per-request limits: requests in the app at once, and requests per client address over time.

Both are asked by the stream layer (``streams/http.py``, ``streams/websocket.py``) before an
app runs; a refusal is a small :class:`Refusal` the stream answers as an ordinary response on
its own stream (HTTP/1.1, an HTTP/2 stream, a WebSocket handshake), never by closing the
connection or sending GOAWAY. Nothing here does I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import Config, parse_rate
from gateway.limits.rejections import RejectionLog

Headers = list[tuple[bytes, bytes]]

# Entries swept from the front of the bucket table per new address: more than the one it
# adds, so full buckets drain, few enough that one request never pays for a long sweep.
_SWEEP_PER_NEW_ADDRESS = 4


@dataclass(frozen=True, slots=True)
class Refusal:
    """A response that answers a request instead of the app: status, headers and a short
    plain-text body (the stream adds its Content-Type and Content-Length)."""

    status: int
    headers: Headers
    body: bytes


def _refusal(status: int, retry_after: int, text: str) -> Refusal:
    # RFC 9110 §10.2.3 (503) and RFC 6585 §4 (429): Retry-After says when to try again.
    # The stream adds Content-Type and Content-Length for the plain-text body.
    return Refusal(status, [(b"retry-after", b"%d" % retry_after)], text.encode("ascii"))


# One second: requests in flight finish quickly, and the client should come back soon.
BUSY = _refusal(503, 1, "503 Service Unavailable: too many requests in progress; retry shortly.\n")


class ConcurrencyLimit:
    """At most ``limit`` requests and WebSockets running in the app at once (one worker).

    The caller pairs every successful :meth:`try_enter` with one :meth:`leave` in a
    ``finally``, so an app exception, a client disconnect and a cancel at shutdown all give
    the place back.
    """

    __slots__ = ("_log", "in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._log = RejectionLog("--limit-concurrency")

    def try_enter(self, client: Sequence[Any] | None) -> Refusal | None:
        """Take a place, or return the 503 to answer when all ``limit`` are taken."""
        if self.in_flight >= self.limit:
            self._log.refused(client, f"all {self.limit} places in progress taken, answered 503")
            return BUSY
        self.in_flight += 1
        return None

    def leave(self) -> None:
        """Give a place back."""
        self.in_flight -= 1

    @property
    def refusals(self) -> int:
        """How many were refused so far."""
        return self._log.total

    def close(self) -> None:
        """Write the pending log summary (server shutdown)."""
        self._log.close()


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, then ``count`` per ``period``.

    Each bucket is stored as one number, the time at which it will be full again (the
    "theoretical arrival time" of the generic cell rate algorithm, which admits exactly what
    a token bucket of ``burst`` tokens refilled at ``count / period`` per second admits). A
    full bucket is the same as no entry, so entries whose time has passed are dropped, and
    the table never holds more than ``max_addresses`` entries: past that the least recently
    seen address is forgotten (it starts again with a full bucket).
    """

    __slots__ = ("_buckets", "_clock", "_interval", "_log", "_tolerance", "burst", "evicted", "max_addresses")

    def __init__(
        self,
        count: float,
        period: float,
        burst: int,
        max_addresses: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = period / count  # seconds one request costs
        self.burst = burst
        self._tolerance = (burst - 1) * self._interval
        self.max_addresses = max_addresses
        self._clock = clock
        # host -> time its bucket is full again; oldest update first.
        self._buckets: dict[str, float] = {}
        self.evicted = 0
        self._log = RejectionLog("--rate-limit")

    @classmethod
    def from_config(cls, config: Config) -> RateLimiter:
        """The limiter ``config.rate_limit`` describes (``rate_limit`` must be set)."""
        count, period = parse_rate(config.rate_limit)
        burst = config.rate_limit_burst or max(1, math.ceil(count))
        return cls(count, period, burst, config.rate_limit_table_size)

    def __len__(self) -> int:
        """Addresses whose bucket is not full (what the table holds)."""
        return len(self._buckets)

    def check(self, client: Sequence[Any] | None) -> Refusal | None:
        """Count one request from ``client``; return the 429 to answer when its bucket is empty."""
        if not client:
            return None  # no address to count it against (never so for TCP)
        host = str(client[0])
        now = self._clock()
        buckets = self._buckets
        # Taken out and put back: a dict keeps insertion order, so the front is always the
        # address seen longest ago (what eviction and the sweep look at first).
        full_at = buckets.pop(host, None)
        if full_at is None:
            self._make_room(now)
            full_at = now
        elif full_at < now:
            full_at = now
        wait = full_at - now - self._tolerance
        if wait > 0:
            buckets[host] = full_at
            retry_after = max(1, math.ceil(wait))
            self._log.refused(client, f"over the rate ({self.burst} at once), answered 429")
            return _refusal(429, retry_after, f"429 Too Many Requests: retry after {retry_after} s.\n")
        buckets[host] = full_at + self._interval
        return None

    def _make_room(self, now: float) -> None:
        # Only a new address grows the table, so only it pays for the sweep: a few of the
        # oldest entries whose bucket is full again go, then the oldest if still at the limit.
        buckets = self._buckets
        for _ in range(_SWEEP_PER_NEW_ADDRESS):
            if not buckets:
                return
            oldest = next(iter(buckets))
            if buckets[oldest] > now:
                break
            del buckets[oldest]
        if len(buckets) >= self.max_addresses:
            del buckets[next(iter(buckets))]
            self.evicted += 1

    @property
    def refusals(self) -> int:
        """How many were refused so far."""
        return self._log.total

    def close(self) -> None:
        """Write the pending log summary (server shutdown)."""
        self._log.close()


class RequestLimits:
    """What the stream layer asks before a request or WebSocket runs (built from ``Config``).

    ``rate`` counts every request, including those ``--static`` answers; ``concurrency``
    counts what runs in the app (``--static`` files do not: the limit protects the app).
    """

    __slots__ = ("concurrency", "rate")

    def __init__(self, concurrency: ConcurrencyLimit | None, rate: RateLimiter | None) -> None:
        self.concurrency = concurrency
        self.rate = rate

    @classmethod
    def from_config(cls, config: Config) -> RequestLimits | None:
        """The limits ``config`` asks for, or ``None`` when it asks for none."""
        concurrency = ConcurrencyLimit(config.limit_concurrency) if config.limit_concurrency else None
        rate = RateLimiter.from_config(config) if config.rate_limit else None
        if concurrency is None and rate is None:
            return None
        return cls(concurrency, rate)

    def check_rate(self, client: Sequence[Any] | None) -> Refusal | None:
        """Count one request from ``client`` (``scope["client"]``); the 429 when over the rate."""
        return None if self.rate is None else self.rate.check(client)

    def refusals(self) -> dict[str, int]:
        """Requests refused so far, by reason (``asgigw_rejections_total``)."""
        counts = {}
        if self.concurrency is not None:
            counts["concurrency"] = self.concurrency.refusals
        if self.rate is not None:
            counts["rate_limit"] = self.rate.refusals
        return counts

    def close(self) -> None:
        """Write pending log summaries (server shutdown)."""
        if self.concurrency is not None:
            self.concurrency.close()
        if self.rate is not None:
            self.rate.close()
