"""How much of one read a WebSocket parses per event-loop turn (``websocket_slices.py``).

Tiny frames are decoded a bounded share per turn, so one read full of them cannot hold up
other connections; a large frame read whole is decoded at once, without being cut into
slices that are copied and parsed over several turns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.streams import websocket_masking
from gateway.streams.websocket_fastpath import SimpleFrameReader
from gateway.streams.websocket_slices import SLICE
from tests.test_websocket_stream import Peer, echo_app, run

KEY = b"\x0f\xf0\x55\xaa"


def masked(first: int, payload: bytes) -> bytes:
    """A client frame with any payload length (RFC 6455 §5.2: 7-bit, 16-bit or 64-bit)."""
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0xFE)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0xFF)) + length.to_bytes(8, "big")
    mask = (KEY * (length // 4 + 1))[:length]
    return header + KEY + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")


def needs_fast_path() -> None:
    if websocket_masking.apply_mask is None:
        pytest.skip("websockets' C speedups are not available: no fast path")


async def turns_until(condition: Any, limit: int = 2000) -> int:
    """Loop turns that pass before ``condition()`` holds (bounded)."""
    for turn in range(limit):
        if condition():
            return turn
        await asyncio.sleep(0)
    raise AssertionError(f"not reached in {limit} loop turns")


def test_a_read_full_of_small_whole_frames_is_decoded_a_share_per_turn() -> None:
    needs_fast_path()

    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_max_message_size=0)
        await peer.open()
        frame = masked(0x82, b"0123456789")
        count = 6000  # 96 KB in one read
        decoded: list[int] = []
        original = SimpleFrameReader.feed

        def counting(self: SimpleFrameReader, data: bytes, messages: list[Any], *args: Any) -> int:
            before = len(messages)
            position = original(self, data, messages, *args)
            decoded.append(len(messages) - before)
            return position

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SimpleFrameReader, "feed", counting)
            peer.protocol.feed(frame * count)
            turns = await turns_until(lambda: sum(decoded) == count)
        # Frames that begin within SLICE bytes per call: at most SLICE / 16 + 1 each.
        assert max(decoded) <= SLICE // len(frame) + 1
        assert turns >= count // (SLICE // len(frame) + 1) - 1
        events = await peer.settle(200)
        assert len([event for event in events if getattr(event, "data", None) == b"0123456789"]) == count
        await peer.finish()

    run(test)


@pytest.mark.parametrize("size", [SLICE + 1, 256 * 1024])
def test_a_large_frame_read_whole_is_decoded_in_the_same_turn(size: int) -> None:
    needs_fast_path()

    async def test() -> None:
        seen: list[Any] = []
        peer = Peer(echo_app(seen), ws_max_message_size=1024 * 1024, read_buffer_size=1024 * 1024)
        await peer.open()
        payload = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
        calls: list[int] = []
        original = SimpleFrameReader.feed

        def counting(self: SimpleFrameReader, data: bytes, messages: list[Any], *args: Any) -> int:
            calls.append(len(data))
            return original(self, data, messages, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SimpleFrameReader, "feed", counting)
            # Followed by a ping (wsproto's) and a small frame, in the same read.
            peer.protocol.feed(masked(0x82, payload) + masked(0x89, b"p") + masked(0x81, b"after"))
            # Decoded in one call, before any loop turn: no slice copied, no turn waited.
            assert len(calls) == 1
            events = await peer.settle(40)
        seen_by_client = [getattr(event, "data", None) or getattr(event, "payload", None) for event in events]
        assert seen_by_client == [payload, b"p", "after"]  # echo, pong, echo
        await peer.finish()

    run(test)
