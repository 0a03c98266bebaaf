"""--proxy-protocol: the PROXY protocol v1/v2 parser, and the header read before TLS.

Raw sockets send exact headers (with the request or the ClientHello in the same segment);
tests/test_haproxy.py puts a real HAProxy in front.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time

import pytest

from gateway.config import Config, ConfigError
from gateway.proxy_protocol import (
    V2_MAX_BLOCK,
    V2_SIGNATURE,
    ProxyCommand,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
)
from tests.apps import edge
from tests.conftest import CertFiles, running_server
from tests.raw import RawClient

REQUEST = b"GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


def v1(source: str = "198.51.100.22", destination: str = "203.0.113.7", family: str = "TCP4") -> bytes:
    return f"PROXY {family} {source} {destination} 35646 443\r\n".encode()


def v2(
    source: str = "198.51.100.22",
    destination: str = "203.0.113.7",
    *,
    command: int = 0x21,
    tlvs: bytes = b"",
) -> bytes:
    if ":" in source:
        block = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, destination)
        family = 0x21
    else:
        block = socket.inet_aton(source) + socket.inet_aton(destination)
        family = 0x11
    block += struct.pack("!HH", 35646, 443) + tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block)) + block


def parse_all(data: bytes, step: int) -> tuple[ProxyHeader, bytes]:
    parser = ProxyHeaderParser()
    for start in range(0, len(data), step):
        header = parser.feed(data[start : start + step])
        if header is not None:
            return header, parser.rest + data[start + step :]
    raise AssertionError("header never completed")


# -- the parser ------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 1000])
def test_v1_tcp4_and_tcp6_in_any_pieces(step: int) -> None:
    header, rest = parse_all(v1() + b"GET /", step)
    assert header == ProxyHeader(ProxyCommand.PROXY, ("198.51.100.22", 35646), ("203.0.113.7", 443))
    assert rest == b"GET /"
    header, _ = parse_all(v1("2001:db8::1", "2001:db8::2", "TCP6"), step)
    assert header.source == ("2001:db8::1", 35646)


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_v2_tcp4_tcp6_tlvs_skipped(step: int) -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\xea\x00\x05abcde"  # ALPN, NOOP, custom
    header, rest = parse_all(v2(tlvs=tlvs) + b"\x16\x03\x01", step)
    assert header.source == ("198.51.100.22", 35646)
    assert header.destination == ("203.0.113.7", 443)
    assert rest == b"\x16\x03\x01"
    header, _ = parse_all(v2("2001:db8::5", "2001:db8::6"), step)
    assert header.source == ("2001:db8::5", 35646)


def test_local_and_unknown_keep_the_real_peer() -> None:
    assert parse_all(v2(command=0x20), 100)[0] == ProxyHeader(ProxyCommand.LOCAL)
    assert parse_all(b"PROXY UNKNOWN\r\n", 100)[0] == ProxyHeader(ProxyCommand.LOCAL)
    assert parse_all(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 100)[0].source is None
    # UDP over IPv4 (0x12): accepted, but with the real addresses (spec §2.2).
    udp = V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12)
    assert parse_all(udp, 100)[0].command is ProxyCommand.LOCAL


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",
        b"PROXY TCP4 ::1 ::2 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.x 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"A" * 120,
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in a v2 header
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # TCP4 block too short
        V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),  # TCP6 block too short
        V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_BLOCK + 1),
        b"\r\n\r\n\x00\r\nQUIX",
    ],
)
def test_invalid_headers_are_refused(data: bytes) -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        for byte in range(len(data)):
            parser.feed(data[byte : byte + 1])


def test_config_options() -> None:
    config = Config(bind=("127.0.0.1:0",), proxy_protocol_bind=("127.0.0.1:0",))
    assert [listener.proxy_protocol for listener in config.listeners] == [False, True]
    assert all(listener.proxy_protocol for listener in Config(proxy_protocol=True).listeners)
    with pytest.raises(ConfigError, match="--proxy-protocol-bind 'nowhere'"):
        Config(proxy_protocol_bind=("nowhere",))


# -- end to end --------------------------------------------------------------------------


def exchange(port: int, data: bytes) -> bytes:
    with RawClient(port) as client:
        client.send(data)
        received, closed = client.read_until_closed()
    assert closed
    return received


def body_json(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    result: dict[str, object] = json.loads(body)
    return result


def test_plain_listener_v1_and_v2_give_the_client_address(caplog: pytest.LogCaptureFixture, http1_parser: str) -> None:
    with (
        caplog.at_level(logging.INFO, logger="gateway.access"),
        running_server(edge.app, proxy_protocol=True, lifespan="off", access_log=True) as server,
    ):
        report = body_json(exchange(server.port, v1() + REQUEST))
        assert report["client"] == ["198.51.100.22", 35646]
        assert report["server"] == ["203.0.113.7", 443]
        report = body_json(exchange(server.port, v2("2001:db8::9", "2001:db8::1") + REQUEST))
        assert report["client"] == ["2001:db8::9", 35646]
        # LOCAL (a health check): the real peer.
        report = body_json(exchange(server.port, v2(command=0x20) + REQUEST))
        assert report["client"][0] == "127.0.0.1"  # type: ignore[index]
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert lines[0].startswith("198.51.100.22:35646 - ")
    assert lines[1].startswith("[2001:db8::9]:35646 - ")


def test_missing_or_invalid_header_closes_with_one_escaped_warning(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="gateway.error"),
        running_server(edge.app, proxy_protocol=True, lifespan="off") as server,
    ):
        assert exchange(server.port, b"GET /\x1b[31m HTTP/1.1\r\n\r\n") == b""
        assert exchange(server.port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x1b[31m\r\n" + REQUEST) == b""
        # The server keeps serving everyone else.
        assert body_json(exchange(server.port, v1() + REQUEST))["client"] == ["198.51.100.22", 35646]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("\x1b" not in line and "\\x1b" in line for line in warnings), warnings
    assert all(line.startswith("127.0.0.1:") and "PROXY" in line for line in warnings)


def test_header_timeout(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="gateway.error"),
        running_server(edge.app, proxy_protocol=True, header_timeout=0.3, lifespan="off") as server,
    ):
        with RawClient(server.port, timeout=3) as client:
            client.send(b"PROXY TCP4 1.2.3.4")
            started = time.monotonic()
            assert client.read_until_closed() == (b"", True)
            assert time.monotonic() - started < 2.5
    assert any("no PROXY protocol header within 0.3s" in record.getMessage() for record in caplog.records)


def test_proxy_protocol_bind_is_per_listener() -> None:
    with running_server(
        edge.app, bind=("127.0.0.1:0",), proxy_protocol_bind=("127.0.0.1:0",), lifespan="off"
    ) as server:
        (plain_port, proxied_port) = (port for _, port in server.server.addresses)
        assert body_json(exchange(plain_port, REQUEST))["client"][0] == "127.0.0.1"  # type: ignore[index]
        assert exchange(plain_port, v1() + REQUEST).startswith(b"HTTP/1.1 400 ")
        assert body_json(exchange(proxied_port, v1() + REQUEST))["client"] == ["198.51.100.22", 35646]
        assert exchange(proxied_port, REQUEST) == b""


def tls_exchange(port: int, header: bytes, context: ssl.SSLContext, *, split: bool) -> bytes:
    """TLS over a raw socket through memory BIOs, so the PROXY header and the ClientHello
    can go out in one segment (``split=False``) or apart."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        assert hello[:1] == b"\x16"
        if split:
            sock.sendall(header)
            time.sleep(0.05)
            sock.sendall(hello)
        else:
            sock.sendall(header + hello)
        for _ in range(20):
            data = sock.recv(65536)
            assert data, "server closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            finally:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
        tls.write(REQUEST)
        sock.sendall(outgoing.read())
        response = b""
        for _ in range(50):
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
            try:
                for _ in range(100):
                    piece = tls.read(65536)
                    if not piece:
                        break
                    response += piece
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                break
            if outgoing.pending:
                sock.sendall(outgoing.read())
            if complete(response):
                break
    return response


def complete(response: bytes) -> bool:
    head, found, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if found and line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.mark.parametrize("split", [False, True])
def test_tls_after_proxy_header_in_one_segment_or_two(cert_files: CertFiles, split: bool) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(edge.app, proxy_protocol=True, **options) as server:
        for header in (v1(), v2(tlvs=b"\x01\x00\x02h2")):
            # A context of its own: httpx sets ALPN h2 on the shared one when other tests use it.
            context = ssl.create_default_context(cafile=str(cert_files.ca))
            report = body_json(tls_exchange(server.port, header, context, split=split))
            assert report["client"] == ["198.51.100.22", 35646]
            assert report["scheme"] == "https"


def test_plain_http_after_proxy_header_on_a_tls_port(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(edge.app, proxy_protocol=True, **options) as server:
        response = exchange(server.port, v1() + REQUEST)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"plain HTTP request was sent to the HTTPS port" in response
