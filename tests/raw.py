"""A raw-socket HTTP/1.1 client for tests that must send exactly the bytes they choose.

Every read has a timeout, so a server that neither answers nor closes fails the test instead
of hanging it. Responses are parsed with h11's CLIENT state machine where a test wants a
parsed answer, and read as bytes where it wants to look at the wire.
"""

from __future__ import annotations

import socket
import ssl
import time
from types import TracebackType

import h11


class RawClient:
    """One TCP (optionally TLS) connection to the server under test."""

    def __init__(self, port: int, *, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.timeout = timeout
        self._parser = h11.Connection(h11.CLIENT)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self, timeout: float | None = None) -> tuple[bytes, bool]:
        """Everything the server sends until it closes; ``closed`` is False on a timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(data), False
            self.sock.settimeout(remaining)
            try:
                piece = self.sock.recv(65536)
            except TimeoutError:
                return bytes(data), False
            except ConnectionResetError:
                return bytes(data), True
            if not piece:
                return bytes(data), True
            data += piece

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        """What the server sent until ``marker`` arrived; AssertionError on a timeout or close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = b""
        while marker not in data:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in time; got {data!r}"
            self.sock.settimeout(remaining)
            piece = self.sock.recv(65536)
            assert piece, f"closed before {marker!r}; got {data!r}"
            data += piece
        return data

    def is_closed(self, timeout: float) -> bool:
        """True if the server closes (EOF or reset) within ``timeout`` without sending more."""
        data, closed = self.read_until_closed(timeout)
        assert data == b"", data
        return closed

    def request(self, method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None) -> None:
        """Send a request without a body through the h11 parser (keeps it in step)."""
        fields = [("host", "127.0.0.1"), *(headers or [])]
        self.send(self._parser.send(h11.Request(method=method, target=target, headers=fields)) or b"")
        self.send(self._parser.send(h11.EndOfMessage()) or b"")

    def response(self) -> tuple[h11.Response, bytes]:
        """Read one complete response to the last :meth:`request`; ready for the next."""
        parser = self._parser
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                self.sock.settimeout(self.timeout)
                parser.receive_data(self.sock.recv(65536))
            elif type(event) is h11.Response:
                response = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                assert response is not None
                if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
                    parser.start_next_cycle()
                return response, bytes(body)
            elif type(event) is h11.ConnectionClosed:
                raise ConnectionError("server closed before a complete response")


def status_of(data: bytes) -> int:
    """The status code of the first response in ``data`` (0 when there is none)."""
    if not data.startswith(b"HTTP/1.1 "):
        return 0
    return int(data[9:12])


def get(port: int, target: str = "/", **kwargs: object) -> tuple[int, bytes]:
    """One request on a new connection: (status, body)."""
    with RawClient(port, **kwargs) as client:  # type: ignore[arg-type]
        client.request(target=target)
        response, body = client.response()
        return response.status_code, body
