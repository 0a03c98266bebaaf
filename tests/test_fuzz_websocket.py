"""Property tests of the WebSocket stream: frames built by hand, then mutated and split.

After an HTTP/1.1 Upgrade (with or without permessage-deflate, RFC 7692) the client's
frames are made here byte by byte (FIN, RSV bits, opcode, mask key, payload, fragments,
control frames between fragments, compressed messages), so that anything a hostile client
sends can be. The server's frames are parsed with wsproto's client-side frame parser. For
any input: no exception escapes, everything written is a valid server frame, a connection
the server ends carries a close frame with a code RFC 6455 §7.4.1 lets an endpoint send,
and memory stays within the limits. Valid frames cut anywhere give the app the same
messages and the client the same echoes.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode

from tests.fuzz_harness import Outcome, exchange, http1_adapter, split, websocket_bound

CUTS = st.lists(st.integers(0, 3000), max_size=8)
# Codes a close frame may carry (RFC 6455 §7.4.1, §7.4.2): the defined ones except 1005,
# 1006 and 1015, which never go on the wire, and 3000-4999 for libraries and applications,
# which the server echoes when the client closed with one (§5.5.1).
SENDABLE_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, *range(3000, 5000)}
NO_CODE = 1005  # how wsproto reports a close frame with an empty body


def handshake(deflate: bool) -> bytes:
    """The client's Upgrade request (RFC 6455 §4.1), offering compression if ``deflate``."""
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else b""
    return (
        b"GET /chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + offer + b"\r\n"
    )


def frame(first: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d", *, masked: bool = True) -> bytes:
    """One client frame: ``first`` is the FIN/RSV/opcode byte (RFC 6455 §5.2)."""
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 65536:
        head = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def compress(payload: bytes) -> bytes:
    """A message compressed as RFC 7692 §7.2.1 says (raw deflate, sync flush, tail removed)."""
    deflater = zlib.compressobj(wbits=-15)
    return (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


@dataclass
class MessagePlan:
    text: bool
    payload: bytes
    pieces: int
    compressed: bool
    ping_inside: bool
    key: bytes


@st.composite
def message_plans(draw: st.DrawFn) -> MessagePlan:
    text = draw(st.booleans())
    payload = draw(st.text(max_size=200)).encode() if text else draw(st.binary(max_size=300))
    return MessagePlan(
        text=text,
        payload=payload,
        pieces=draw(st.integers(1, 4)),
        compressed=draw(st.booleans()),
        ping_inside=draw(st.booleans()),
        key=draw(st.binary(min_size=4, max_size=4)),
    )


def message_frames(plan: MessagePlan, deflate: bool) -> bytes:
    """A data message as 1..n fragments, a PING between them if asked (allowed, §5.4)."""
    compressed = plan.compressed and deflate
    payload = compress(plan.payload) if compressed else plan.payload
    step = max(1, -(-len(payload) // plan.pieces))
    pieces = [payload[start : start + step] for start in range(0, len(payload), step)] or [b""]
    out = b""
    for index, piece in enumerate(pieces):
        opcode = (0x1 if plan.text else 0x2) if index == 0 else 0x0
        fin = 0x80 if index == len(pieces) - 1 else 0
        rsv1 = 0x40 if compressed and index == 0 else 0
        out += frame(fin | rsv1 | opcode, piece, plan.key)
        if plan.ping_inside and index == 0:
            out += frame(0x89, b"in-between", plan.key)
    return out


@st.composite
def sessions(draw: st.DrawFn, *, may_close: bool = True) -> tuple[bool, bytes]:
    """Compression on or off, and the frames of a valid session (maybe ending with a close)."""
    deflate = draw(st.booleans())
    frames = b"".join(message_frames(plan, deflate) for plan in draw(st.lists(message_plans(), max_size=5)))
    if may_close and draw(st.booleans()):
        frames += CLIENT_CLOSE
    return deflate, frames


CLIENT_CLOSE = frame(0x88, (1000).to_bytes(2, "big") + b"bye")


@st.composite
def mutated_sessions(draw: st.DrawFn) -> tuple[bool, bytes]:
    """A valid session with header bits, lengths, masks or payload bytes changed."""
    deflate, frames = draw(sessions())
    data = bytearray(frames)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "bits", "splice", "delete", "frame"]))
        position = draw(st.integers(0, len(data)))
        if kind == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif kind == "bits" and position < len(data):
            data[position] ^= draw(st.sampled_from([0x80, 0x40, 0x20, 0x10, 0x0F, 0x7F]))
        elif kind == "splice":
            data[position:position] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 10))]
        else:
            first = draw(st.integers(0, 255))
            payload = draw(st.binary(max_size=130) | st.just(b"\x03\xe8\xff\xfe"))
            data[position:position] = frame(first, payload, masked=draw(st.booleans()))
    return deflate, bytes(data)


@dataclass
class ServerFrames:
    status: int
    messages: list[tuple[Opcode, Any]]
    pongs: list[bytes]
    close_codes: list[int]


def parse_output(output: bytes, offered_deflate: bool) -> ServerFrames:
    """The handshake answer and the server's frames, checked valid by wsproto's parser."""
    head, separator, rest = output.partition(b"\r\n\r\n")
    if not separator:
        assert not output, output
        return ServerFrames(0, [], [], [])
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        return ServerFrames(status, [], [], [])
    extensions = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-extensions":
            assert offered_deflate, "compression accepted without an offer"
            extension = PerMessageDeflate()
            extension.finalize(value.strip().decode())
            extensions.append(extension)
    parser = FrameProtocol(client=True, extensions=extensions)
    parser.receive_bytes(rest)
    found = ServerFrames(status, [], [], [])
    for received in parser.received_frames():
        if received.opcode is Opcode.PONG:
            found.pongs.append(bytes(received.payload))
        elif received.opcode is Opcode.CLOSE:
            # wsproto reports a close frame without a body as 1005 (RFC 6455 §7.1.5): the
            # server answers a client's empty close with an empty one (§5.5.1).
            code = received.payload[0]
            found.close_codes.append(code)
        elif received.opcode is not Opcode.PING:
            found.messages.append((received.opcode, received.payload))
    return found


def run(deflate: bool, chunks: list[bytes], *, eof: bool = False, **config: Any) -> Outcome:
    outcome: Outcome = asyncio.run(
        exchange(http1_adapter, [handshake(deflate), *chunks], eof=eof, bound=websocket_bound, **config)
    )
    outcome.check()
    return outcome


def check_answered(outcome: Outcome, deflate: bool, eof: bool) -> ServerFrames:
    found = parse_output(outcome.output, deflate)
    assert found.status == 101, outcome.output[:200]
    assert set(found.close_codes) <= SENDABLE_CLOSE_CODES | {NO_CODE}, found.close_codes
    if outcome.closed and not eof:
        assert found.close_codes, f"closed without a close frame: {outcome.output[-40:]!r}"
    return found


def app_messages(outcome: Outcome) -> list[Any]:
    return [
        (message.get("text"), message.get("bytes"))
        for message in outcome.received
        if message["type"] == "websocket.receive"
    ]


@given(sessions(), CUTS)
@example((True, frame(0xC1, compress(b"x" * 100)) + frame(0x81, b"plain")), [3, 7])
# Found by the long profile: a small binary frame cut between its mask key and its payload
# was collected by the fast path with a 16-bit-length header size, and arrived empty.
@example((False, frame(0x82, b"\x00", b"\x00" * 4) + frame(0x82, b"", b"\x00" * 4) * 2), [6])
@example((False, frame(0x82, b"abc", b"\x01\x02\x03\x04")), [7])
def test_valid_frames_split_anywhere_give_the_same_result(session: tuple[bool, bytes], cuts: list[int]) -> None:
    deflate, frames = session
    whole = run(deflate, [frames])
    pieces = run(deflate, split(frames, cuts))
    assert app_messages(pieces) == app_messages(whole)
    whole_frames = check_answered(whole, deflate, eof=False)
    assert parse_output(pieces.output, deflate) == whole_frames
    # Every message came back once, and a client close was answered with 1000.
    assert len(whole_frames.messages) == len(app_messages(whole))
    assert whole_frames.close_codes in ([], [1000])


def test_messages_read_with_the_client_close_are_all_answered_before_the_close() -> None:
    frames = frame(0x82, b"") * 5 + CLIENT_CLOSE
    for chunks in ([frames], split(frames, [6])):
        outcome = run(False, chunks)
        found = check_answered(outcome, False, eof=False)
        assert len(app_messages(outcome)) == 5
        assert len(found.messages) == 5 and found.close_codes == [1000]


@given(mutated_sessions(), CUTS, st.booleans())
@example((False, frame(0x81, b"\xff\xfe")), [], False)  # invalid UTF-8: 1007
@example((True, frame(0xC1, b"\xff" * 40)), [], False)  # not a deflate stream: 1007
@example((True, frame(0xC2, compress(b"\x00" * 100_000))), [5], False)  # inflates past the limit: 1009
@example((False, frame(0x82, b"x" * 9000)), [], False)  # past --ws-max-message-size: 1009
@example((False, frame(0x88, (4893).to_bytes(2, "big"))), [], False)  # found by fuzz/: an app code, echoed
@example((False, frame(0x88, b"")), [], False)  # found by the long profile: an empty close, answered empty
def test_mutated_frames_get_a_defined_answer(session: tuple[bool, bytes], cuts: list[int], eof: bool) -> None:
    deflate, frames = session
    outcome = run(deflate, split(frames, cuts), eof=eof)
    check_answered(outcome, deflate, eof)


@given(st.booleans(), st.binary(max_size=400), CUTS, st.booleans())
def test_arbitrary_bytes_after_the_handshake_get_a_defined_answer(
    deflate: bool, data: bytes, cuts: list[int], eof: bool
) -> None:
    outcome = run(deflate, split(data, cuts), eof=eof)
    check_answered(outcome, deflate, eof)
