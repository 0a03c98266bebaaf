"""How TLS connections read (gateway/tls_connection.py), on asyncio's loop and on uvloop.

The SSL protocol of either loop must decrypt into the connection's buffer, never into a new
256 KiB ``bytes`` per read; bodies must arrive intact while several connections share the
buffer; a closed connection must let go of its SSL state at once; and the peer's answer to
our own close_notify is not a request cut short.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import http.client
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.config import installed
from tests.conftest import CertFiles, running_server

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop_factory() -> asyncio.AbstractEventLoop:
    import uvloop

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@pytest.fixture(
    params=[
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(
            _uvloop_factory,
            id="uvloop",
            marks=pytest.mark.skipif(not installed("uvloop"), reason="uvloop is not installed (asgigw[fast])"),
        ),
    ]
)
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """Each test runs on the stock asyncio loop and on uvloop (their SSL protocols differ)."""
    factory: LoopFactory = request.param
    return factory


async def digest_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``<length> <sha256>`` of the request body."""
    if scope["type"] != "http":
        return
    digest = hashlib.sha256()
    length = 0
    while True:
        message = await receive()
        body = message.get("body", b"")
        digest.update(body)
        length += len(body)
        if not message.get("more_body"):
            break
    answer = f"{length} {digest.hexdigest()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


def _post(connection: http.client.HTTPSConnection, body: bytes) -> str:
    connection.request("POST", "/", body=body, headers={"content-type": "application/octet-stream"})
    response = connection.getresponse()
    assert response.status == 200
    return response.read().decode()


def _expected(body: bytes) -> str:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}"


@pytest.fixture
def server_side_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bool, weakref.ref[ssl.SSLObject]]]]:
    """Every ``SSLObject.read`` of this process: (into a buffer?, the SSLObject).

    The clients here use blocking ``ssl`` sockets (``SSLSocket``), so every SSLObject read
    is the server's.
    """
    reads: list[tuple[bool, weakref.ref[ssl.SSLObject]]] = []
    original = ssl.SSLObject.read

    def read(self: ssl.SSLObject, size: int = 1024, buffer: Any = None) -> Any:
        reads.append((buffer is not None, weakref.ref(self)))
        return original(self, size, buffer)

    monkeypatch.setattr(ssl.SSLObject, "read", read)
    yield reads


def test_requests_are_decrypted_into_the_connection_buffer(
    loop_factory: LoopFactory, cert_files: CertFiles, server_side_reads: list[tuple[bool, Any]]
) -> None:
    # A read without a buffer is SSLObject.read(256 KiB): a new 256 KiB bytes per read,
    # which glibc may serve with mmap + mremap + munmap on every request.
    with running_server(
        digest_app, loop_factory=loop_factory, certfile=str(cert_files.cert), keyfile=str(cert_files.key)
    ) as server:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=cert_files.client_context)
        try:
            bodies = [b"", b"x" * 100, os.urandom(300 * 1024)]  # the last spans many TLS records
            for body in bodies:
                assert _post(connection, body) == _expected(body)
            serving_reads = list(server_side_reads)  # before the close: shutdown reads into the void
        finally:
            connection.close()
    assert serving_reads, "the server read nothing through ssl.SSLObject"
    assert all(into_buffer for into_buffer, _ in serving_reads)


def test_bodies_stay_intact_while_connections_share_the_buffer(
    loop_factory: LoopFactory, cert_files: CertFiles
) -> None:
    # The connections of one loop share one decryption buffer: interleaved uploads on
    # several connections must each arrive whole and in order.
    results: dict[int, list[bool]] = {}

    def upload(index: int, port: int) -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=cert_files.client_context)
        try:
            outcomes = []
            for _ in range(3):
                body = os.urandom(512 * 1024 + index)
                outcomes.append(_post(connection, body) == _expected(body))
            results[index] = outcomes
        finally:
            connection.close()

    with running_server(
        digest_app, loop_factory=loop_factory, certfile=str(cert_files.cert), keyfile=str(cert_files.key)
    ) as server:
        threads = [threading.Thread(target=upload, args=(index, server.port)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert results == {index: [True, True, True] for index in range(4)}


def test_a_closed_connection_frees_its_tls_state_without_the_garbage_collector(
    loop_factory: LoopFactory, cert_files: CertFiles, server_side_reads: list[tuple[bool, Any]]
) -> None:
    # The SSL protocol holds a 256 KiB read buffer (zero-filled, so resident, on asyncio's
    # loop) and OpenSSL's state; kept until a full collection, they pile up under churn.
    with running_server(
        digest_app, loop_factory=loop_factory, certfile=str(cert_files.cert), keyfile=str(cert_files.key)
    ) as server:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=cert_files.client_context)
        assert _post(connection, b"hello") == _expected(b"hello")
        server_objects = {id(ref()): ref for _, ref in server_side_reads if ref() is not None}
        assert server_objects
        gc.disable()
        try:
            connection.close()
            deadline = time.monotonic() + 5
            while server.server.context.connections and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not server.server.context.connections
            time.sleep(0.1)  # the loop's last callbacks for the connection
            alive = [ref for ref in server_objects.values() if ref() is not None]
        finally:
            gc.enable()
    assert alive == []


def test_the_answer_to_our_close_notify_is_not_a_request_cut_short(
    loop_factory: LoopFactory, cert_files: CertFiles, caplog: pytest.LogCaptureFixture
) -> None:
    # After "connection: close" the server closes (sending close_notify, RFC 8446 §6.1);
    # asyncio's SSL transport reports the client's close_notify back as EOF, which must not
    # be taken for a request cut short (a 400 log line and metric for every such client).
    caplog.set_level(logging.INFO, logger="gateway")
    with running_server(
        digest_app, loop_factory=loop_factory, certfile=str(cert_files.cert), keyfile=str(cert_files.key)
    ) as server:
        for _ in range(3):
            connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=cert_files.client_context)
            connection.request("GET", "/", headers={"connection": "close"})
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, _expected(b"").encode())
            connection.close()
        time.sleep(0.3)  # the server's side of the closing handshakes
    assert [record.getMessage() for record in caplog.records if "rejected request" in record.getMessage()] == []
