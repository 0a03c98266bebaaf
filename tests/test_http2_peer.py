"""A raw HTTP/2 peer for the HTTP/2 tests, a shared test app, and connection-entry tests.

:class:`FramePeer` writes frames built with hyperframe and hpack (so it can send what h2's
client state machine refuses to produce) over a real socket, and reads the server's frames
back one by one. RFC 9113 §3 (starting HTTP/2) is tested here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import CertFiles, RunningServer, running_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x1, 0x2, 0x3
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB


def h2_context(cert_files: CertFiles, protocols: Iterable[str] = ("h2",)) -> ssl.SSLContext:
    """A client TLS context trusting the test CA and offering ``protocols`` by ALPN."""
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    context.set_alpn_protocols(list(protocols))
    return context


class PeerClosed(Exception):
    """The server closed the connection while the peer waited for a frame."""


class FramePeer:
    """A client that speaks HTTP/2 frame by frame over a real socket."""

    def __init__(
        self,
        server: RunningServer,
        *,
        tls: ssl.SSLContext | None = None,
        preface: bool = True,
        settings: dict[int, int] | None = None,
    ) -> None:
        sock = socket.create_connection((server.host, server.port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.eof = False
        if preface:
            self.sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FramePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------

    def send(self, *frames: Frame) -> None:
        self.sock.sendall(b"".join(frame.serialize() for frame in frames))

    def block(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(list(headers))

    def request_headers(
        self, stream_id: int, path: bytes = b"/", method: bytes = b"GET", extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> list[tuple[bytes, bytes]]:
        return [(b":method", method), (b":scheme", b"https"), (b":path", path), (b":authority", b"localhost"), *extra]

    def request(
        self,
        stream_id: int,
        path: bytes = b"/",
        method: bytes = b"GET",
        extra: Iterable[tuple[bytes, bytes]] = (),
        *,
        end_stream: bool = True,
    ) -> None:
        """Open ``stream_id`` with a request head."""
        frame = HeadersFrame(stream_id, self.block(self.request_headers(stream_id, path, method, extra)))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        self.send(frame)

    def data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        self.send(DataFrame(stream_id, data, flags=["END_STREAM"] if end_stream else []))

    # -- receiving --------------------------------------------------------------------

    def read_frame(self, timeout: float = 5.0) -> Frame:
        """The next frame from the server; HEADERS blocks are decoded into ``.decoded``."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    if isinstance(frame, HeadersFrame):
                        frame.decoded = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                raise PeerClosed("server closed the connection")
            self.buffer += chunk

    def acknowledge_settings(self) -> None:
        # The server may already have closed (after a GOAWAY still being read here).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(SettingsFrame(0, flags=["ACK"]))

    def read_until(self, predicate: Callable[[Frame], bool], timeout: float = 5.0) -> list[Frame]:
        """Frames up to and including the first one ``predicate`` accepts."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(max(0.01, deadline - time.monotonic()))
            frames.append(frame)
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.acknowledge_settings()
            if predicate(frame):
                return frames

    def goaway(self, timeout: float = 5.0) -> GoAwayFrame:
        """Read until the server's GOAWAY."""
        frame = self.read_until(lambda f: isinstance(f, GoAwayFrame), timeout)[-1]
        assert isinstance(frame, GoAwayFrame)
        return frame

    def reset_of(self, stream_id: int, timeout: float = 5.0) -> int:
        """Read until RST_STREAM on ``stream_id``; its error code."""
        frame = self.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == stream_id, timeout)[-1]
        assert isinstance(frame, RstStreamFrame)
        return frame.error_code

    def response(self, stream_id: int, timeout: float = 5.0, *, window_updates: bool = True) -> dict[str, Any]:
        """Read the whole response on ``stream_id``: status, headers, body, trailers, reset."""
        result: dict[str, Any] = {"status": None, "headers": [], "informational": [], "body": b"", "trailers": None}
        result["reset"] = None
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(max(0.01, deadline - time.monotonic()))
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.acknowledge_settings()
            if frame.stream_id != stream_id:
                continue
            if isinstance(frame, HeadersFrame):
                fields = frame.decoded  # type: ignore[attr-defined]
                status = dict(fields).get(b":status")
                if status is None:
                    result["trailers"] = fields
                elif status.startswith(b"1"):
                    result["informational"].append((int(status), fields))
                else:
                    result["status"] = int(status)
                    result["headers"] = fields
            elif isinstance(frame, DataFrame):
                result["body"] += frame.data
                if window_updates and frame.flow_controlled_length:
                    self.send(
                        WindowUpdateFrame(0, window_increment=frame.flow_controlled_length),
                        WindowUpdateFrame(stream_id, window_increment=frame.flow_controlled_length),
                    )
            elif isinstance(frame, RstStreamFrame):
                result["reset"] = frame.error_code
                return result
            if "END_STREAM" in frame.flags:
                return result

    def closed(self, timeout: float = 5.0) -> list[Frame]:
        """Read until the server closes the connection; the frames seen on the way."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(0.01, deadline - time.monotonic())))
            except PeerClosed:
                return frames


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The HTTP/2 tests' app; the path picks the behaviour."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/download":
        size = int(scope["query_string"] or b"100000")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        while size > 0:
            await send({"type": "http.response.body", "body": chunk[:size], "more_body": True})
            size -= 65536
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait":
        # Holds its stream open until the client goes away.
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"0.2"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/fail-before":
        raise RuntimeError("fails before responding")
    elif path == "/fail-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("fails mid-response")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    elif path == "/hints":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hinted"})
    else:
        info = {
            "http_version": scope["http_version"],
            "method": scope["method"],
            "scheme": scope["scheme"],
            "path": path,
            "query_string": scope["query_string"].decode(),
            "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
            "extensions": sorted(scope["extensions"]),
        }
        body = json.dumps(info).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


# -- RFC 9113 §3: starting HTTP/2 -------------------------------------------------------


def test_alpn_h2_over_tls_answers_with_settings_and_serves(cert_files: CertFiles) -> None:
    with running_server(app, certfile=str(cert_files.cert), keyfile=str(cert_files.key)) as server:
        with FramePeer(server, tls=h2_context(cert_files)) as peer:
            assert peer.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
            first = peer.read_frame()
            # §3.4: the server preface is a SETTINGS frame; ours announces the limits.
            assert isinstance(first, SettingsFrame)
            assert first.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
            assert first.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 65536
            assert first.settings[SettingsFrame.ENABLE_PUSH] == 0
            peer.request(1, b"/info?a=1")
            response = peer.response(1)
            assert response["status"] == 200
            info = json.loads(response["body"])
            assert info["http_version"] == "2"
            assert info["scheme"] == "https"
            assert info["query_string"] == "a=1"
            assert ["host", "localhost"] in info["headers"]
            assert "http.response.trailers" in info["extensions"]


def test_alpn_offers_only_http11_with_http2_off(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "http2": False}
    with running_server(app, **options) as server:
        raw = socket.create_connection((server.host, server.port), timeout=5)
        with h2_context(cert_files, ("h2", "http/1.1")).wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"


def test_prior_knowledge_on_plain_listener() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/info")
        response = peer.response(1)
        assert response["status"] == 200
        info = json.loads(response["body"])
        assert info["http_version"] == "2"
        assert info["scheme"] == "https"  # :scheme as the client sent it


def test_preface_split_across_reads_is_recognised() -> None:
    with running_server(app) as server, FramePeer(server, preface=False) as peer:
        data = PREFACE + SettingsFrame(0).serialize()
        for index in range(0, len(data), 5):
            peer.sock.sendall(data[index : index + 5])
            time.sleep(0.01)
        peer.request(1, b"/info")
        assert peer.response(1)["status"] == 200


@pytest.mark.parametrize(
    "bad", [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x01"]
)
def test_invalid_preface_gets_goaway_protocol_error(bad: bytes, cert_files: CertFiles) -> None:
    # RFC 9113 §3.4: an invalid preface is a connection error of type PROTOCOL_ERROR.
    with running_server(app) as server, FramePeer(server, preface=False) as peer:
        peer.sock.sendall(bad + b"\x00" * 20)
        frames = peer.closed()
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert goaways and goaways[-1].error_code == PROTOCOL_ERROR


def test_tls_invalid_preface_gets_goaway(cert_files: CertFiles) -> None:
    with running_server(app, certfile=str(cert_files.cert), keyfile=str(cert_files.key)) as server:
        with FramePeer(server, tls=h2_context(cert_files), preface=False) as peer:
            peer.sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            goaways = [frame for frame in peer.closed() if isinstance(frame, GoAwayFrame)]
            assert goaways and goaways[-1].error_code == PROTOCOL_ERROR


def test_plain_http11_still_served_with_http2_on() -> None:
    with running_server(app) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert b'"http_version": "1.1"' in data


def test_h2c_upgrade_answers_stream_1_over_http2() -> None:
    # RFC 7540 §3.2: 101, then the server preface, then the response on stream 1.
    settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize_body()
    import base64

    token = base64.urlsafe_b64encode(settings).rstrip(b"=")
    with running_server(app) as server, FramePeer(server, preface=False) as peer:
        peer.sock.sendall(
            b"GET /info HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\n"
            b"upgrade: h2c\r\nhttp2-settings: " + token + b"\r\n\r\n" + PREFACE + SettingsFrame(0).serialize()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += peer.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"upgrade: h2c" in head.lower()
        response = peer.response(1)
        assert response["status"] == 200
        info = json.loads(response["body"])
        assert info["http_version"] == "2"
        assert ["upgrade", "h2c"] not in info["headers"]
        # The connection goes on as HTTP/2.
        peer.request(3, b"/info")
        assert peer.response(3)["status"] == 200


def test_h2c_upgrade_with_body_is_served_as_http11() -> None:
    with running_server(app) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
                b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\ncontent-length: 5\r\n\r\nhello"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert b"\r\nhello\r\n" in data


def test_ping_is_answered() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        peer.send(PingFrame(0, opaque_data=b"12345678"))
        frames = peer.read_until(lambda f: isinstance(f, PingFrame))
        assert "ACK" in frames[-1].flags
        assert frames[-1].opaque_data == b"12345678"


def test_hpack_garbage_is_compression_error() -> None:
    # RFC 9113 §4.3: a header block that cannot be decoded is a COMPRESSION_ERROR.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.send(HeadersFrame(1, b"\xff\xff\xff\xff\xff\x7f", flags=["END_HEADERS", "END_STREAM"]))
        assert peer.goaway().error_code == COMPRESSION_ERROR


def test_continuation_frames_make_one_header_block() -> None:
    with running_server(app) as server, FramePeer(server) as peer:
        block = peer.block(peer.request_headers(1, b"/info", extra=[(b"x-long", b"v" * 3000)]))
        peer.send(
            HeadersFrame(1, block[:100], flags=["END_STREAM"]),
            ContinuationFrame(1, block[100:1000]),
            ContinuationFrame(1, block[1000:], flags=["END_HEADERS"]),
        )
        response = peer.response(1)
        assert response["status"] == 200
        # The field cut across all three frames reached the app whole (RFC 9113 §4.3).
        assert ["x-long", "v" * 3000] in json.loads(response["body"])["headers"]


def test_idle_connection_gets_goaway_and_close() -> None:
    with running_server(app, keep_alive_timeout=0.3) as server, FramePeer(server) as peer:
        frames = peer.closed(timeout=5)
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert goaways and goaways[-1].error_code == 0


def test_no_http2_on_plain_listener_ignores_preface_and_upgrade() -> None:
    with running_server(app, http2=False) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(PREFACE + SettingsFrame(0).serialize())
            data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 505")  # an HTTP/1.1 error, not an HTTP/2 SETTINGS frame
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(
                b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
                b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
            )
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        assert b'"http_version": "1.1"' in response


@pytest.mark.parametrize("settings", [b"not base64!!", b"AAMAAABkAAQ"])
def test_h2c_upgrade_with_bad_http2_settings_is_served_as_http11(settings: bytes) -> None:
    # RFC 7540 §3.2.1: the value must be a base64url SETTINGS payload (whole 6-byte entries).
    with running_server(app) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(
                b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
                b"upgrade: h2c\r\nhttp2-settings: " + settings + b"\r\n\r\n"
            )
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        assert b'"http_version": "1.1"' in response
