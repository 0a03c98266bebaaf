"""--proxy-headers: client address, scheme and host from trusted proxies' headers.

The parser and the right-to-left walk are tested as pure functions; end-to-end tests run a
real server and check scope["client"], scope["scheme"] (wss for WebSockets), the Host header
and the access log over HTTP/1.1, HTTP/2 and WebSocket (both), and that a client that is not
a trusted proxy changes nothing with the same headers.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl

import h2.events
import httpx
import pytest
from websockets.sync.client import connect as ws_connect
from wsproto.events import TextMessage

from gateway.config import Config, ConfigError
from gateway.proxy_headers import Forwarded, Hop, TrustedProxies, parse_forwarded, split_node
from tests.apps import edge
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import CertFiles, running_server
from tests.test_websocket_http2 import H2WebSocketClient

H = list[tuple[bytes, bytes]]
LOOPBACK = ("127.0.0.1", "::1")


def resolve(
    headers: H, peer: tuple[str, int] = ("10.0.0.1", 5000), allow: tuple[str, ...] = ("10.0.0.0/8",)
) -> Forwarded:
    return TrustedProxies(allow, use_host=True).resolve(peer, headers)


# -- the parser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.60", ("192.0.2.60", 0)),
        ("192.0.2.60:4711", ("192.0.2.60", 4711)),
        ("2001:db8:cafe::17", ("2001:db8:cafe::17", 0)),
        ("[2001:db8:cafe::17]", ("2001:db8:cafe::17", 0)),
        ("[2001:db8:cafe::17]:4711", ("2001:db8:cafe::17", 4711)),
        ("[2001:db8::1]:_port", ("2001:db8::1", 0)),
        ("192.0.2.60:99999", ("192.0.2.60", 0)),
        ("unknown", None),
        ("_hidden", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("example.com", None),
        ("", None),
    ],
)
def test_split_node(node: str, expected: tuple[str, int] | None) -> None:
    assert split_node(node) == expected


def test_forwarded_quoted_strings_ipv6_and_parameters() -> None:
    # RFC 7239 §4 examples: quoted IPv6 with port, several parameters, case-insensitive names.
    hops = parse_forwarded(
        ['for="_gazonk"', 'For="[2001:db8:cafe::17]:4711"', "for=192.0.2.60;proto=http;by=203.0.113.43"]
    )
    assert hops == [
        Hop("_gazonk"),
        Hop("[2001:db8:cafe::17]:4711"),
        Hop("192.0.2.60", "http"),
    ]
    assert parse_forwarded(['for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https;host="a.example:8443"']) == [
        Hop("192.0.2.43"),
        Hop("[2001:db8:cafe::17]", "https", "a.example:8443"),
    ]
    # A comma inside a quoted string does not split elements; an escaped quote stays in.
    assert parse_forwarded(['for="a\\"b, c";proto=https']) == [Hop('a"b, c', "https")]


@pytest.mark.parametrize(
    "line",
    ['for="unclosed', "for=", "proto=https", "for=a b", "for=1.2.3.4;;", "garbage", 'for="x"y'],
)
def test_forwarded_garbage_is_an_unreadable_hop(line: str) -> None:
    assert parse_forwarded([line]) == [Hop(None)]


# -- the right-to-left walk --------------------------------------------------------------


def test_x_forwarded_for_walks_past_trusted_hops() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.7, 10.1.1.1, 10.2.2.2"), (b"x-forwarded-proto", b"https")]
    assert resolve(headers) == Forwarded(("198.51.100.7", 0), "https", None)


def test_spoofed_left_part_is_never_reached() -> None:
    # The client wrote "1.1.1.1" itself; the trusted proxy appended the address it saw.
    headers = [(b"x-forwarded-for", b"1.1.1.1, 203.0.113.9")]
    assert resolve(headers).client == ("203.0.113.9", 0)


def test_multiple_header_lines_join_in_order() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-for", b"10.1.1.1")]
    assert resolve(headers).client == ("198.51.100.7", 0)
    lines = [(b"forwarded", b"for=198.51.100.8;proto=https"), (b"forwarded", b'for="[10::1]";proto=http')]
    assert resolve(lines, allow=("10.0.0.0/8",)) == Forwarded(("10::1", 0), "http", None)
    both = [(b"forwarded", b"for=198.51.100.8;proto=https"), (b"forwarded", b"for=10.3.3.3;proto=http")]
    assert resolve(both) == Forwarded(("198.51.100.8", 0), "https", None)


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.1"), (b"forwarded", b"for=198.51.100.9;proto=https")]
    assert resolve(headers) == Forwarded(("198.51.100.9", 0), "https", None)


def test_obfuscated_and_unknown_nodes() -> None:
    assert resolve([(b"forwarded", b"for=_hidden, for=10.0.0.2")]).client == ("_hidden", 0)
    assert resolve([(b"forwarded", b"for=unknown;proto=https")]) == Forwarded(None, "https", None)


def test_garbage_stops_at_the_last_trusted_proxy() -> None:
    assert resolve([(b"x-forwarded-for", b"<script>, 10.0.0.3")]).client == ("10.0.0.3", 0)
    assert resolve([(b"x-forwarded-for", b"not-an-ip")]).client == ("10.0.0.1", 5000)
    assert resolve([(b"forwarded", b'for="broken')]).client == ("10.0.0.1", 5000)


def test_proto_and_host_by_position_or_nearest() -> None:
    headers = [
        (b"x-forwarded-for", b"198.51.100.1, 10.0.0.5"),
        (b"x-forwarded-proto", b"https, http"),
        (b"x-forwarded-host", b"shop.example, inner.local"),
    ]
    assert resolve(headers) == Forwarded(("198.51.100.1", 0), "https", "shop.example")
    only_proto = [(b"x-forwarded-proto", b"https")]
    assert resolve(only_proto) == Forwarded(("10.0.0.1", 5000), "https", None)
    bad_values = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"gopher")]
    bad_values.append((b"x-forwarded-host", b"evil.example/path"))
    assert resolve(bad_values) == Forwarded(("198.51.100.1", 0), None, None)


def test_host_only_when_opted_in() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-host", b"shop.example")]
    assert TrustedProxies(("10.0.0.0/8",)).resolve(("10.0.0.1", 1), headers).host is None


def test_trust_networks_star_and_mapped_ipv4() -> None:
    proxies = TrustedProxies(("10.0.0.0/8, 192.0.2.1", "2001:db8::/32"))
    assert proxies.trusts(("10.200.0.1", 1))
    assert proxies.trusts(("192.0.2.1", 1))
    assert not proxies.trusts(("192.0.2.2", 1))
    assert proxies.trusts(("2001:db8::5", 1))
    assert proxies.trusts(("::ffff:10.0.0.9", 1))
    assert not proxies.trusts(None)
    assert not proxies.trusts(("/run/asgigw.sock", 0))
    assert TrustedProxies(("*",)).trusts(("203.0.113.1", 1))


def test_config_validates_options() -> None:
    assert Config(proxy_headers=True).forwarded_allow_ips == LOOPBACK
    with pytest.raises(ConfigError, match=r"--forwarded-allow-ips 'ten\.0\.0\.1'"):
        Config(forwarded_allow_ips=("ten.0.0.1",))
    with pytest.raises(ConfigError, match="--forwarded-host needs --proxy-headers"):
        Config(forwarded_host=True)
    Config(proxy_headers=True, forwarded_allow_ips=("*", "10.0.0.0/8", "::1"), forwarded_host=True)


# -- end to end ----------------------------------------------------------------------------

SPOOF = [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "shop.example")]


def test_http1_and_http2_trusted_peer(cert_files: CertFiles, caplog: pytest.LogCaptureFixture) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with (
        caplog.at_level(logging.INFO, logger="gateway.access"),
        running_server(edge.app, proxy_headers=True, forwarded_host=True, access_log=True, **options) as server,
    ):
        for http2 in (False, True):
            context = ssl.create_default_context(cafile=str(cert_files.ca))  # httpx sets ALPN on it
            with httpx.Client(verify=context, http2=http2) as client:
                response = client.get(f"{server.url}/x", headers=SPOOF)
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            report = response.json()
            assert report["client"] == ["198.51.100.7", 0]
            assert report["scheme"] == "https"
            assert report["host"] == "shop.example"
            assert report["server"] == ["shop.example", 443]
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert len(lines) == 2 and all(line.startswith("198.51.100.7:0 - ") for line in lines)


def test_untrusted_peer_changes_nothing() -> None:
    # 127.0.0.1 is not in the trusted list: the same headers are just headers.
    with running_server(edge.app, proxy_headers=True, forwarded_allow_ips=("10.0.0.0/8",), lifespan="off") as server:
        report = httpx.get(f"{server.url}/x", headers=[*SPOOF, ("Forwarded", "for=192.0.2.1;proto=https")]).json()
    assert report["client"][0] == "127.0.0.1" and report["client"][1] > 0
    assert report["scheme"] == "http"
    assert report["host"] == f"127.0.0.1:{server.port}"


def test_without_proxy_headers_nothing_changes() -> None:
    with running_server(edge.app, lifespan="off") as server:
        report = httpx.get(f"{server.url}/x", headers=SPOOF).json()
    assert report["client"][0] == "127.0.0.1"
    assert report["scheme"] == "http"


def test_websocket_http1_scheme_becomes_wss() -> None:
    with running_server(edge.app, proxy_headers=True, lifespan="off") as server:
        headers = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
        with ws_connect(f"ws://127.0.0.1:{server.port}/chat", additional_headers=headers, open_timeout=5) as ws:
            report = json.loads(ws.recv(timeout=5))
    assert report["client"] == ["2001:db8::7", 4711]
    assert report["scheme"] == "wss"


def test_websocket_http2_scheme_becomes_wss(cert_files: CertFiles) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "lifespan": "off"}
    with running_server(edge.app, proxy_headers=True, **options) as server:
        context = ssl.create_default_context(cafile=str(cert_files.ca))
        context.set_alpn_protocols(["h2"])
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=5), server_hostname="localhost"
        ) as sock:
            client = H2WebSocketClient(sock, "https")
            stream_id = client.h2.get_next_available_stream_id()
            client.h2.send_headers(
                stream_id,
                [
                    (b":method", b"CONNECT"),
                    (b":protocol", b"websocket"),
                    (b":scheme", b"https"),
                    (b":path", b"/chat"),
                    (b":authority", b"localhost"),
                    (b"sec-websocket-version", b"13"),
                    (b"x-forwarded-for", b"203.0.113.50"),
                    (b"x-forwarded-proto", b"http"),
                ],
            )
            sock.sendall(client.h2.data_to_send())
            status = None
            while status is None:
                client._read()
                for event in client.pending:
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers or ())[b":status"]
            assert status == b"200"
            from wsproto.connection import Connection as FrameConnection
            from wsproto.connection import ConnectionType

            client.pending = [event for event in client.pending if not isinstance(event, h2.events.ResponseReceived)]
            client.frames[stream_id] = FrameConnection(ConnectionType.CLIENT)
            message = next(event for event in client.events(stream_id, 1) if isinstance(event, TextMessage))
    report = json.loads(message.data)
    assert report["client"] == ["203.0.113.50", 0]
    # The trusted proxy says the client came over plain http: ws, although we speak TLS.
    assert report["scheme"] == "ws"


# -- the command line -----------------------------------------------------------------------


def test_cli_options_reach_the_server() -> None:
    args = ("--port", "0", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.1", "--forwarded-host")
    with gateway_process(*args, "tests.apps.edge:app") as server:
        report = httpx.get(f"{server.url}/x", headers=SPOOF, timeout=5).json()
    assert report["client"] == ["198.51.100.7", 0]
    assert report["host"] == "shop.example"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--forwarded-allow-ips", "10.0.0.0/33"), "--forwarded-allow-ips '10.0.0.0/33': not an IP address"),
        (("--forwarded-host",), "--forwarded-host needs --proxy-headers"),
        (("--proxy-protocol-bind", "localhost"), "--proxy-protocol-bind 'localhost': expected HOST:PORT"),
        (("--redirect-http", "127.0.0.1:0"), "--redirect-http redirects to the HTTPS listener"),
    ],
)
def test_cli_bad_values_are_one_line(args: tuple[str, ...], message: str) -> None:
    result = run_gateway(*args, "tests.apps.edge:app")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asgigw: error: {message}"), lines
