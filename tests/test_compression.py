"""``--compress`` end to end: real httpx (HTTP/1.1 plain and TLS, HTTP/2) and curl clients.

Bodies are read raw and decoded here with gzip, brotli and zstandard, so the test sees the
bytes on the wire, not what a client library made of them.
"""

from __future__ import annotations

import gzip
import shutil
import ssl
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import compression
from tests.apps.edge_responses import ETAG, PAGE, EdgeApp
from tests.conftest import CertFiles, RunningServer, running_server
from tests.raw import RawClient
from tests.test_http2_peer import FramePeer, h2_context

try:
    import brotli
except ImportError:  # the [compress] extra is not installed
    brotli = None
try:
    import zstandard
except ImportError:
    zstandard = None

needs_brotli = pytest.mark.skipif(brotli is None, reason="brotli is not installed (asgigw[compress])")
needs_zstandard = pytest.mark.skipif(zstandard is None, reason="zstandard is not installed (asgigw[compress])")
CODINGS = ["gzip", pytest.param("br", marks=needs_brotli), pytest.param("zstd", marks=needs_zstandard)]
TRANSPORTS = ["h1-plain", "h1-tls", "h2-tls"]
STATIC_TEXT = b"".join(b"line %d of a static text file\n" % n for n in range(100_000))  # ~3.3 MB


def decoder(coding: str) -> Callable[[bytes], bytes]:
    """An incremental decoder for one response body."""
    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "br":
        return brotli.Decompressor().process  # type: ignore[no-any-return]
    assert coding == "zstd"
    return zstandard.ZstdDecompressor().decompressobj().decompress  # type: ignore[no-any-return]


def decode(coding: str, data: bytes) -> bytes:
    return decoder(coding)(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compress-site")
    (root / "static").mkdir()
    (root / "static" / "big.txt").write_bytes(STATIC_TEXT)
    (root / "static" / "page.html").write_bytes(PAGE)
    (root / "static" / "pre.html").write_bytes(PAGE)
    (root / "static" / "pre.html.gz").write_bytes(gzip.compress(PAGE))
    (root / "static" / "pic.png").write_bytes(PAGE)
    (root / "sent.txt").write_bytes(STATIC_TEXT[:200_000])
    return root


@pytest.fixture(scope="module")
def app(site: Path) -> EdgeApp:
    return EdgeApp(pathsend_file=site / "sent.txt")


@pytest.fixture(scope="module")
def servers(app: EdgeApp, site: Path, cert_files: CertFiles) -> Iterator[dict[str, RunningServer]]:
    static = (f"/static/={site / 'static'}",)
    tls = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    with (
        running_server(app, compress=True, static=static) as plain,
        running_server(app, compress=True, static=static, **tls) as secure,
    ):
        yield {"plain": plain, "tls": secure}


def client_for(transport: str, cert_files: CertFiles) -> httpx.Client:
    # A context of its own: httpx sets ALPN on the one it is given, and the shared
    # cert_files.client_context must stay as other tests (websockets clients) expect it.
    verify: Any = ssl.create_default_context(cafile=str(cert_files.ca)) if transport.endswith("tls") else False
    return httpx.Client(http2=transport.startswith("h2"), verify=verify, timeout=5.0)


def url_for(servers: dict[str, RunningServer], transport: str, path: str) -> str:
    return servers["tls" if transport.endswith("tls") else "plain"].url + path


def fetch(client: httpx.Client, url: str, encoding: str | None, method: str = "GET") -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as it came over the wire."""
    headers = {"accept-encoding": encoding} if encoding is not None else {}
    if encoding is None:
        headers = {"accept-encoding": ""}  # httpx would offer its own list otherwise
    with client.stream(method, url, headers=headers) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("coding", CODINGS)
def test_page_is_compressed_with_the_coding_asked_for(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str, coding: str
) -> None:
    with client_for(transport, cert_files) as client:
        response, raw = fetch(client, url_for(servers, transport, "/page"), coding)
    assert response.http_version == ("HTTP/2" if transport.startswith("h2") else "HTTP/1.1")
    assert response.headers["content-encoding"] == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == "W/" + ETAG.decode()
    assert "content-length" not in response.headers
    assert "accept-ranges" not in response.headers  # ranges are of the uncompressed bytes
    assert decode(coding, raw) == PAGE
    assert len(raw) < len(PAGE) / 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_preference_among_equals_and_q_values(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str
) -> None:
    best = compression.available_encoders()
    with client_for(transport, cert_files) as client:
        url = url_for(servers, transport, "/page")
        response, raw = fetch(client, url, "gzip, br, zstd")
        assert response.headers["content-encoding"] == next(iter(best))
        response, raw = fetch(client, url, "zstd;q=0.5, br;q=0.6, gzip;q=0.9")
        assert response.headers["content-encoding"] == "gzip"
        assert decode("gzip", raw) == PAGE
        for refusing in ("gzip;q=0", "*;q=0", "identity;q=1, gzip;q=0.5", "compress, deflate", None):
            response, raw = fetch(client, url, refusing)
            assert "content-encoding" not in response.headers, refusing
            assert response.headers["vary"] == "Accept-Encoding"
            assert response.headers["etag"] == ETAG.decode()  # the app's strong tag, untouched
            assert raw == PAGE
        response, raw = fetch(client, url, "*")
        assert response.headers["content-encoding"] == next(iter(best))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_responses_that_are_never_compressed(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str
) -> None:
    with client_for(transport, cert_files) as client:
        for path in ("/small", "/image", "/no-transform", "/encoded"):
            response, raw = fetch(client, url_for(servers, transport, path), "gzip")
            assert "vary" not in response.headers, path
            assert response.headers.get("content-encoding") in (None, "identity-by-app"), path
            assert raw in (PAGE, b"x" * 100), path
        response, raw = fetch(client, url_for(servers, transport, "/partial"), "gzip")
        assert response.status_code == 206 and raw == PAGE[:2000]
        assert "content-encoding" not in response.headers
        for path, status in (("/no-content", 204), ("/not-modified", 304)):
            response, raw = fetch(client, url_for(servers, transport, path), "gzip")
            assert response.status_code == status and raw == b""
            assert "content-encoding" not in response.headers
            assert response.headers.get("etag") in (None, ETAG.decode())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_vary_merge_structured_suffix_and_unknown_length(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str
) -> None:
    with client_for(transport, cert_files) as client:
        response, raw = fetch(client, url_for(servers, transport, "/vary"), "gzip")
        assert response.headers["vary"] == "Cookie, Accept-Encoding"
        assert decode("gzip", raw) == PAGE
        response, raw = fetch(client, url_for(servers, transport, "/json"), "gzip")
        assert response.headers["content-encoding"] == "gzip"  # application/*+json
        assert decode("gzip", raw).startswith(b'{"rows": [')
        response, raw = fetch(client, url_for(servers, transport, "/no-length"), "gzip")
        assert response.headers["content-encoding"] == "gzip"
        assert decode("gzip", raw) == PAGE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_head_says_what_get_would_get(servers: dict[str, RunningServer], cert_files: CertFiles, transport: str) -> None:
    with client_for(transport, cert_files) as client:
        response, raw = fetch(client, url_for(servers, transport, "/page"), "gzip", method="HEAD")
        assert raw == b""
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["etag"] == "W/" + ETAG.decode()
        assert "content-length" not in response.headers
        response, raw = fetch(client, url_for(servers, transport, "/static/page.html"), "gzip", method="HEAD")
        assert raw == b"" and response.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("coding", CODINGS)
def test_events_arrive_one_by_one(
    servers: dict[str, RunningServer], app: EdgeApp, cert_files: CertFiles, transport: str, coding: str
) -> None:
    """The first event must be decodable before the app sends the second (a flush per message)."""
    gate_name = f"{transport}-{coding}"
    with client_for(transport, cert_files) as client:
        url = url_for(servers, transport, f"/events?{gate_name}")
        with client.stream("GET", url, headers={"accept-encoding": coding}) as response:
            assert response.headers["content-encoding"] == coding
            decode_piece = decoder(coding)
            received = b""
            pieces = response.iter_raw()
            deadline = time.monotonic() + 5
            while b"data: first\n\n" not in received:
                assert time.monotonic() < deadline, received
                received += decode_piece(next(pieces))
            assert b"second" not in received
            app.gate(gate_name).set()
            for piece in pieces:
                received += decode_piece(piece)
    assert received == b"data: first\n\ndata: second\n\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("coding", CODINGS)
def test_static_and_pathsend_files_are_compressed_as_they_are_read(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str, coding: str
) -> None:
    with client_for(transport, cert_files) as client:
        response, raw = fetch(client, url_for(servers, transport, "/static/big.txt"), coding)
        assert response.headers["content-encoding"] == coding
        assert response.headers["etag"].startswith('W/"')
        assert "content-length" not in response.headers
        assert decode(coding, raw) == STATIC_TEXT
        response, raw = fetch(client, url_for(servers, transport, "/pathsend"), coding)
        assert response.headers["content-encoding"] == coding
        assert decode(coding, raw) == STATIC_TEXT[:200_000]
        # A range is served from the file as it is; images are not compressed.
        with client.stream(
            "GET",
            url_for(servers, transport, "/static/big.txt"),
            headers={"accept-encoding": coding, "range": "bytes=10-19"},
        ) as response:
            assert response.status_code == 206 and response.read() == STATIC_TEXT[10:20]
            assert "content-encoding" not in response.headers
        response, raw = fetch(client, url_for(servers, transport, "/static/pic.png"), coding)
        assert "content-encoding" not in response.headers and raw == PAGE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_precompressed_static_file_is_sent_as_it_is(
    servers: dict[str, RunningServer], cert_files: CertFiles, transport: str
) -> None:
    with client_for(transport, cert_files) as client:
        response, raw = fetch(client, url_for(servers, transport, "/static/pre.html"), "gzip")
        assert response.headers["content-encoding"] == "gzip"
        assert raw == gzip.compress(PAGE) or gzip.decompress(raw) == PAGE
        assert raw == (Path(servers["plain"].server.config.static[0].partition("=")[2]) / "pre.html.gz").read_bytes()
        assert response.headers["vary"] == "Accept-Encoding"  # once, not merged twice


@pytest.mark.parametrize("secure", [False, True])
def test_trailers_follow_the_compressed_body_over_http1(
    servers: dict[str, RunningServer], cert_files: CertFiles, secure: bool
) -> None:
    server = servers["tls" if secure else "plain"]
    # A context of its own: httpx sets ALPN (h2) on the shared one.
    context = ssl.create_default_context(cafile=str(cert_files.ca)) if secure else None
    with RawClient(server.port, context=context) as client:
        client.send(
            b"GET /trailers HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nte: trailers\r\nconnection: close\r\n\r\n"
        )
        data, _ = client.read_until_closed(5)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower() and b"transfer-encoding: chunked" in head.lower()
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    assert gzip.decompress(body) == PAGE
    assert rest == b"x-checksum: abc123\r\n\r\n"


def test_trailers_follow_the_compressed_body_over_http2(
    servers: dict[str, RunningServer], cert_files: CertFiles
) -> None:
    with FramePeer(servers["tls"], tls=h2_context(cert_files)) as peer:
        peer.request(1, b"/trailers", extra=[(b"accept-encoding", b"gzip"), (b"te", b"trailers")])
        response = peer.response(1)
    assert (b"content-encoding", b"gzip") in response["headers"]
    assert gzip.decompress(response["body"]) == PAGE
    assert response["trailers"] == [(b"x-checksum", b"abc123")]


def test_websocket_is_not_compressed(servers: dict[str, RunningServer]) -> None:
    with RawClient(servers["plain"].port) as client:
        client.send(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
            b"accept-encoding: gzip\r\n\r\n"
        )
        data = client.read_until(b"hello hello")
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"content-encoding" not in head.lower() and b"vary" not in head.lower()
    assert frames[0] == 0x81 and b"hello hello" in frames  # a plain text frame, no deflate asked


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_compressed(servers: dict[str, RunningServer], cert_files: CertFiles, version: str) -> None:
    url = servers["tls"].url + "/page"
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--compressed", version, "--cacert", str(cert_files.ca), "-D", "-", url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert body == PAGE  # curl decoded whatever it was sent
    codings = [
        line.split(b":", 1)[1].strip() for line in head.lower().split(b"\r\n") if line.startswith(b"content-encoding:")
    ]
    # curl offers every coding its build has at q=1: the server's first choice among those.
    features = subprocess.run(["curl", "-V"], capture_output=True, text=True, timeout=10).stdout.lower()
    offered = {"gzip"} | {coding for coding, feature in (("br", "brotli"), ("zstd", "zstd")) if feature in features}
    expected = next(coding for coding in compression.available_encoders() if coding in offered)
    assert codings == [expected.encode()]


def test_without_the_extra_only_gzip_is_offered(
    monkeypatch: pytest.MonkeyPatch, app: EdgeApp, cert_files: CertFiles
) -> None:
    """An installation without brotli/zstandard: the registry holds gzip alone."""
    monkeypatch.setattr(compression, "_brotli_factory", lambda: None)
    monkeypatch.setattr(compression, "_zstd_factory", lambda: None)
    assert list(compression.available_encoders()) == ["gzip"]
    with running_server(app, compress=True) as server, httpx.Client(http2=True, timeout=5.0) as client:
        response, raw = fetch(client, server.url + "/page", "zstd, br, gzip")
        assert response.headers["content-encoding"] == "gzip"
        assert decode("gzip", raw) == PAGE
        response, raw = fetch(client, server.url + "/page", "br, zstd")
        assert "content-encoding" not in response.headers and raw == PAGE
        assert response.headers["vary"] == "Accept-Encoding"


def test_off_by_default(app: EdgeApp) -> None:
    with running_server(app) as server, httpx.Client(timeout=5.0) as client:
        response, raw = fetch(client, server.url + "/page", "gzip")
    assert "content-encoding" not in response.headers and "vary" not in response.headers
    assert raw == PAGE and response.headers["etag"] == ETAG.decode()


def test_compress_options(app: EdgeApp) -> None:
    with (
        running_server(app, compress=True, compress_types=("image/png",), compress_min_size=0) as server,
        httpx.Client(timeout=5.0) as client,
    ):
        response, raw = fetch(client, server.url + "/image", "gzip")
        assert response.headers["content-encoding"] == "gzip" and decode("gzip", raw) == PAGE
        response, raw = fetch(client, server.url + "/page", "gzip")
        assert "content-encoding" not in response.headers
        response, raw = fetch(client, server.url + "/small", "gzip")  # 100 bytes and a min of 0
        assert "content-encoding" not in response.headers  # text/html is not in the list any more
    with (
        running_server(app, compress=True, compress_min_size=50_000) as server,
        httpx.Client(timeout=5.0) as client,
    ):
        response, raw = fetch(client, server.url + "/page", "gzip")
        assert "content-encoding" not in response.headers and "vary" not in response.headers
