"""The limit objects of gateway/limits/ on their own: counting, refusals, bounded tables, logs."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from gateway.config import Config, ConfigError, parse_rate
from gateway.limits import AddressConnections, ConcurrencyLimit, ConnectionGate, RateLimiter, RequestLimits
from gateway.limits.rejections import RejectionLog, escaped_address


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_the_burst_then_answers_429_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(count=2, period=1.0, burst=3, max_addresses=100, clock=clock)
    client = ("10.0.0.1", 5000)
    assert [limiter.check(client) for _ in range(3)] == [None, None, None]
    refusal = limiter.check(client)
    assert refusal is not None and refusal.status == 429
    assert (b"retry-after", b"1") in refusal.headers
    assert limiter.check(("10.0.0.2", 1)) is None  # another address has its own bucket
    clock.now += 0.5  # one token back at 2/s
    assert limiter.check(client) is None
    assert limiter.check(client) is not None


def test_rate_limiter_retry_after_is_the_wait_for_one_token_rounded_up() -> None:
    clock = FakeClock()
    limiter = RateLimiter(count=1, period=60.0, burst=1, max_addresses=10, clock=clock)
    assert limiter.check(("10.0.0.1", 1)) is None
    clock.now += 15
    refusal = limiter.check(("10.0.0.1", 2))
    assert refusal is not None and (b"retry-after", b"45") in refusal.headers


def test_rate_limiter_forgets_full_buckets_and_stays_within_its_table_size() -> None:
    clock = FakeClock()
    limiter = RateLimiter(count=10, period=1.0, burst=10, max_addresses=5000, clock=clock)
    for number in range(100_000):
        clock.now += 0.00001  # 100k addresses within one second: none is full again yet
        assert limiter.check((f"10.{number >> 16}.{(number >> 8) & 255}.{number & 255}", 1)) is None
        assert len(limiter) <= 5000
    assert len(limiter) == 5000 and limiter.evicted == 95_000
    clock.now += 2.0  # every bucket is full again: each request sweeps a few away
    for number in range(2000):
        limiter.check((f"192.168.{number >> 8}.{number & 255}", 1))
    assert len(limiter) <= 2000


def test_rate_limiter_from_config_defaults_the_burst_to_n() -> None:
    limiter = RateLimiter.from_config(Config(rate_limit="600/m"))
    assert limiter.burst == 600
    limiter = RateLimiter.from_config(Config(rate_limit="0.5/s", rate_limit_burst=4))
    assert limiter.burst == 4


def test_concurrency_limit_counts_places() -> None:
    limit = ConcurrencyLimit(2)
    assert limit.try_enter(("127.0.0.1", 1)) is None
    assert limit.try_enter(("127.0.0.1", 2)) is None
    refusal = limit.try_enter(("127.0.0.1", 3))
    assert refusal is not None and refusal.status == 503 and (b"retry-after", b"1") in refusal.headers
    limit.leave()
    assert limit.try_enter(("127.0.0.1", 3)) is None
    assert limit.in_flight == 2


def test_request_limits_are_none_without_options() -> None:
    assert RequestLimits.from_config(Config()) is None
    limits = RequestLimits.from_config(Config(limit_concurrency=3))
    assert limits is not None and limits.rate is None and limits.check_rate(("127.0.0.1", 1)) is None


def test_address_connections_table_holds_only_addresses_with_open_connections() -> None:
    table = AddressConnections(limit=2)
    keys = [table.opened((f"fd00::{number:x}", 443)) for number in range(100_000)]
    assert len(table) == 100_000
    for key in keys:
        assert key is not None
        table.closed(key)
    assert len(table) == 0
    first, second = table.opened(("10.0.0.1", 1)), table.opened(("10.0.0.1", 2))
    assert first == second == "10.0.0.1"
    assert table.opened(("10.0.0.1", 3)) is None
    assert table.opened(("10.0.0.2", 3)) == "10.0.0.2"
    table.closed("10.0.0.1")
    assert table.count("10.0.0.1") == 1


def test_connection_gate_counts_and_wakes_waiters() -> None:
    async def main() -> None:
        gate = ConnectionGate(2)
        slots = [gate.try_acquire(), gate.try_acquire()]
        assert None not in slots and gate.try_acquire() is None and gate.open == 2
        waiter = asyncio.ensure_future(gate.wait_for_room())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        slot = slots[0]
        assert slot is not None
        slot.release()
        slot.release()  # a second release gives nothing back twice
        await asyncio.wait_for(waiter, 1)
        assert gate.open == 1 and gate.paused_count == 1

    asyncio.run(main())


def test_connection_gate_blocking_wait_for_accept_threads() -> None:
    gate = ConnectionGate(1)
    slot = gate.try_acquire()
    assert slot is not None
    assert not gate.wait_for_room_blocking(0.05)
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(gate.wait_for_room_blocking(5)))
    thread.start()
    slot.release()
    thread.join(5)
    assert woke == [True]


def test_rejection_log_writes_a_few_lines_under_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        log = RejectionLog("--rate-limit", interval=0.2)
        for number in range(10_000):
            log.refused((f"10.0.{number >> 8}.{number & 255}", 1), "over the rate")
        await asyncio.sleep(0.35)
        log.close()

    with caplog.at_level(logging.WARNING, logger="gateway.error"):
        asyncio.run(main())
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("10.0.0.0:1 - refused: over the rate (--rate-limit)")
    assert lines[1].startswith("9999 more refused in the last 0.2s (--rate-limit), the latest from 10.0.39.15:1")


def test_logged_addresses_are_escaped() -> None:
    forged = ("1.2.3.4\n2026-12-04 [INFO] forged\x1b[31m", 80)
    text = escaped_address(forged)
    assert "\n" not in text and "\x1b" not in text
    assert text == "1.2.3.4\\n2026-12-04 [INFO] forged\\x1b[31m:80"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10/s", (10.0, 1.0)), ("600/m", (600.0, 60.0)), ("0.5/s", (0.5, 1.0)), ("3/minute", (3.0, 60.0))],
)
def test_parse_rate(text: str, expected: tuple[float, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit_concurrency": -1}, "--limit-concurrency must be 0 (off) or more"),
        ({"max_connections": -5}, "--max-connections must be 0 (off) or more"),
        ({"max_connections_per_ip": -1}, "--max-connections-per-ip must be 0 (off) or more"),
        ({"rate_limit": "10"}, "--rate-limit '10': expected N/s or N/m"),
        ({"rate_limit": "0/s"}, "--rate-limit '0/s': expected N/s or N/m"),
        ({"rate_limit": "x/s"}, "--rate-limit 'x/s': expected N/s or N/m"),
        ({"rate_limit": "5/h"}, "--rate-limit '5/h': expected N/s or N/m"),
        ({"rate_limit": "nan/s"}, "--rate-limit 'nan/s': expected N/s or N/m"),
        ({"rate_limit_burst": 5}, "--rate-limit-burst needs --rate-limit"),
        ({"rate_limit": "1/s", "rate_limit_burst": -1}, "--rate-limit-burst must be 0 (N of --rate-limit) or more"),
        ({"rate_limit": "1/s", "rate_limit_table_size": 0}, "--rate-limit-table-size must be at least 1"),
    ],
)
def test_config_rejects_bad_limits(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config(**options)  # type: ignore[arg-type]
