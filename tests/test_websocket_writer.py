"""FrameWriter: writers take turns (first come, first served), also when one is cancelled.

A sender that holds each write until the test releases it stands for an HTTP/2 adapter
waiting for flow-control window in the middle of a frame: while it waits, no other writer
may put bytes on the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.events import Data, OutboundEvent
from gateway.streams.websocket_messages import WebSocketClosedError
from gateway.streams.websocket_writer import FrameWriter


class HeldSender:
    """Records the start and end of every write; each write waits until released."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release: asyncio.Queue[None] = asyncio.Queue()
        # Called as a write ends, before the writer passes the turn on.
        self.on_end: dict[str, Callable[[], object]] = {}

    async def stream_send(self, event: OutboundEvent) -> None:
        assert isinstance(event, Data)
        name = event.data.decode()
        self.log.append(f"start {name}")
        await asyncio.wait_for(self.release.get(), 2)
        self.log.append(f"end {name}")
        if name in self.on_end:
            self.on_end[name]()

    def body_consumed(self, stream_id: int, size: int) -> None:
        raise AssertionError("not used by the writer")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_writers_take_turns_in_arrival_order_and_a_cancelled_one_is_skipped() -> None:
    async def test() -> None:
        sender = HeldSender()
        tasks: set[asyncio.Task[None]] = set()
        writer = FrameWriter(sender, 1, tasks)
        first = asyncio.create_task(writer.write(b"a"))
        await settle()
        second = asyncio.create_task(writer.write(b"b"))
        cancelled = asyncio.create_task(writer.write(b"x"))
        third = asyncio.create_task(writer.write(b"c"))
        await settle()
        assert sender.log == ["start a"]  # the others wait for their turn
        cancelled.cancel()
        await settle()
        for _ in range(3):
            sender.release.put_nowait(None)
            await settle()
        await asyncio.wait_for(asyncio.gather(first, second, third), 2)
        assert sender.log == ["start a", "end a", "start b", "end b", "start c", "end c"]
        assert cancelled.cancelled()
        # The turn is free again: a new write starts at once.
        fourth = asyncio.create_task(writer.write(b"d"))
        await settle()
        assert sender.log[-1] == "start d"
        sender.release.put_nowait(None)
        await asyncio.wait_for(fourth, 2)

    asyncio.run(test())


@pytest.mark.parametrize("when", ["before its turn is handed over", "as its turn is handed over"])
def test_a_writer_cancelled_around_its_turn_hands_it_on(when: str) -> None:
    async def test() -> None:
        sender = HeldSender()
        writer = FrameWriter(sender, 1, set())
        first = asyncio.create_task(writer.write(b"a"))
        await settle()
        second = asyncio.create_task(writer.write(b"b"))
        third = asyncio.create_task(writer.write(b"c"))
        await settle()
        if when == "before its turn is handed over":
            # Cancelled while waiting; the turn then passes over it to "c".
            sender.on_end["a"] = second.cancel
        else:
            # The turn is handed to "b" first, and the cancellation lands before it runs.
            sender.on_end["a"] = lambda: asyncio.get_running_loop().call_soon(second.cancel)
        sender.release.put_nowait(None)
        await asyncio.wait_for(first, 2)
        await settle()
        assert second.cancelled() and sender.log[-1] == "start c"
        sender.release.put_nowait(None)
        await asyncio.wait_for(third, 2)
        assert "start b" not in sender.log

    asyncio.run(test())


def test_queued_frames_wait_for_the_app_write_in_progress() -> None:
    async def test() -> None:
        sender = HeldSender()
        tasks: set[asyncio.Task[None]] = set()
        writer = FrameWriter(sender, 1, tasks)
        app_write = asyncio.create_task(writer.write(b"app"))
        await settle()
        writer.pong_soon(b"pong")
        await settle()
        assert sender.log == ["start app"]
        for _ in range(2):
            sender.release.put_nowait(None)
            await settle()
        await asyncio.wait_for(app_write, 2)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert sender.log == ["start app", "end app", "start pong", "end pong"]

    asyncio.run(test())


def test_write_after_the_end_raises() -> None:
    async def test() -> None:
        writer = FrameWriter(HeldSender(), 1, set())
        writer.ended = True
        with pytest.raises(WebSocketClosedError):
            await writer.write(b"late")

    asyncio.run(test())
