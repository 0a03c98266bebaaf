"""Static files at the edge (``--static``) and ASGI Path Send, end to end on 127.0.0.1.

Three transports: plain HTTP/1.1 (where the kernel's sendfile must really be used: a
wrapped ``os.sendfile`` counts the bytes), HTTP/1.1 over TLS and HTTP/2 over TLS (chunked
reads). Traversal attempts go over raw sockets, since httpx normalises paths.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import static
from gateway.config import Config, ConfigError
from tests.apps.process import run_gateway
from tests.conftest import CertFiles, RunningServer, running_server
from tests.raw import RawClient, status_of

JS = b"console.log('asgigw');\n" * 4
DATA = bytes(range(256)) * 400  # 102,400 bytes: above the sendfile threshold
BIG_SIZE = 20 * 1024 * 1024
BROTLI = b"\x1b\x5b\x00\xf8fake brotli stream"  # never decoded: the server sends it as it is
TYPES = {
    "page.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "data.json": "application/json",
    "app.js.map": "application/json",
    "logo.svg": "image/svg+xml",
    "mod.wasm": "application/wasm",
    "font.woff2": "font/woff2",
    "pic.png": "image/png",
    "pic.jpg": "image/jpeg",
    "pic.webp": "image/webp",
    "favicon.ico": "image/vnd.microsoft.icon",
    "notes.txt": "text/plain; charset=utf-8",
    "blob.unknownsuffix": "application/octet-stream",
}


@dataclass
class Site:
    root: Path
    outside: Path
    big_digest: str


class RecordingApp:
    """Answers ``app:PATH`` and records every path it sees; pathsend routes under /send/."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.paths: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        assert scope["type"] == "http"
        with self.lock:
            self.paths.append(scope["path"])
        path = scope["path"]
        if path.startswith("/send/"):
            await self.pathsend(scope, path[len("/send/") :], send)
            return
        body = f"app:{path}".encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def pathsend(self, scope: dict[str, Any], name: str, send: Callable[..., Any]) -> None:
        target: object = {
            "relative": "site/big.bin",
            "missing": str(self.site.root / "nope.bin"),
            "folder": str(self.site.root),
            "number": 42,
        }.get(name, str(self.site.root / name))
        headers = [(b"content-type", b"application/octet-stream")]
        if name != "chunked.bin" and isinstance(target, str) and os.path.isfile(target):
            headers.append((b"content-length", b"%d" % os.path.getsize(target)))
        extension = "http.response.pathsend" in scope["extensions"]
        headers.append((b"x-pathsend-advertised", b"yes" if extension else b"no"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": target})

    def calls(self) -> list[str]:
        with self.lock:
            return list(self.paths)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("static")
    root, outside = base / "site", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOP SECRET\n")
    for name in TYPES:
        (root / name).write_bytes(JS if name == "app.js" else b"x" * 10)
    (root / "data.bin").write_bytes(DATA)
    digest = hashlib.sha256()
    with (root / "big.bin").open("wb") as handle:
        block = hashlib.sha512(b"seed").digest() * 1024  # 64 KiB, not all zeros
        for index in range(BIG_SIZE // len(block)):
            piece = bytes([index % 251]) + block[1:]
            handle.write(piece)
            digest.update(piece)
    (root / "comp.js").write_bytes(JS)
    (root / "comp.js.gz").write_bytes(gzip.compress(JS))
    (root / "comp.js.br").write_bytes(BROTLI)
    (root / "only-gz.css").write_bytes(b"body{}")
    (root / "only-gz.css.gz").write_bytes(gzip.compress(b"body{}"))
    (root / "evil.js").write_bytes(JS)
    (root / ".hidden").write_bytes(b"hidden")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<p>index</p>")
    (root / "folder").mkdir()
    (root / "folder" / "inner.txt").write_bytes(b"inner")
    try:
        (root / "link_in.js").symlink_to(root / "app.js")
        (root / "link_out.txt").symlink_to(outside / "secret.txt")
        (root / "dir_out").symlink_to(outside, target_is_directory=True)
        (root / "evil.js.gz").symlink_to(outside / "secret.txt")
    except OSError:  # Windows without the symlink privilege: those tests are skipped
        pass
    return Site(root=root, outside=outside, big_digest=digest.hexdigest())


def needs_symlinks(site: Site) -> None:
    if not (site.root / "link_out.txt").is_symlink():
        pytest.skip("symlinks cannot be created here")


@pytest.fixture(scope="module")
def app(site: Site) -> RecordingApp:
    return RecordingApp(site)


def static_options(site: Site) -> dict[str, Any]:
    return {"static": (f"/static/={site.root}",), "lifespan": "off"}


@pytest.fixture(scope="module")
def plain_server(site: Site, app: RecordingApp) -> Iterator[RunningServer]:
    with running_server(app, **static_options(site)) as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(site: Site, app: RecordingApp, cert_files: CertFiles) -> Iterator[RunningServer]:
    with running_server(
        app, certfile=str(cert_files.cert), keyfile=str(cert_files.key), **static_options(site)
    ) as server:
        yield server


@dataclass
class Target:
    name: str
    client: httpx.Client
    url: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.get(self.url + path, **kwargs)
        assert response.http_version == ("HTTP/2" if self.name == "h2" else "HTTP/1.1")
        return response


@pytest.fixture(params=["h1", "h1-tls", "h2"])
def target(
    request: pytest.FixtureRequest, plain_server: RunningServer, tls_server: RunningServer, cert_files: CertFiles
) -> Iterator[Target]:
    if request.param == "h1":
        client = httpx.Client(timeout=30)
        url = plain_server.url
    else:
        client = httpx.Client(http2=request.param == "h2", verify=cert_files.client_context, timeout=30)
        url = tls_server.url
    with client:
        yield Target(request.param, client, url)


@pytest.fixture
def sendfile_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int] | None:
    """Bytes each ``os.sendfile`` call sent (asyncio calls it for loop.sendfile on plain TCP);
    None where there is no os.sendfile (Windows: asyncio uses TransmitFile there)."""
    if not hasattr(os, "sendfile"):
        return None
    real = os.sendfile
    sent: list[int] = []

    def counting(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        result = real(out_fd, in_fd, offset, count)
        sent.append(result)
        return result

    monkeypatch.setattr(os, "sendfile", counting)
    return sent


def raw_get(port: int, target: bytes, headers: bytes = b"") -> bytes:
    """One raw request line and head exactly as given; everything the server answers."""
    with RawClient(port) as client:
        client.send(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + headers + b"\r\n")
        data, closed = client.read_until_closed()
    assert closed
    return data


def raw_response(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
    """GET over a raw socket; the body as sent (no content decoding)."""
    with RawClient(port) as client:
        client.request(target=path, headers=headers)
        response, body = client.response()
    fields = {name.decode(): value.decode() for name, value in response.headers}
    return response.status_code, fields, body


# -- what is served, on every transport --------------------------------------------------


def test_content_types(plain_server: RunningServer, app: RecordingApp) -> None:
    with httpx.Client(base_url=plain_server.url) as client:
        for name, expected in TYPES.items():
            response = client.get(f"/static/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"] == expected, name
    assert not any(path.startswith("/static/") for path in app.calls())


def test_file_headers_and_app_not_called(target: Target, app: RecordingApp) -> None:
    before = len(app.calls())
    response = target.get("/static/app.js")
    assert response.status_code == 200 and response.content == JS
    assert response.headers["content-length"] == str(len(JS))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["etag"].startswith('"') and response.headers["etag"].endswith('"')
    assert "vary" not in response.headers and "content-encoding" not in response.headers
    assert len(app.calls()) == before


def test_etag_gives_304(target: Target) -> None:
    first = target.get("/static/app.js")
    etag = first.headers["etag"]
    again = target.get("/static/app.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "public, max-age=3600"
    assert target.get("/static/app.js", headers={"if-none-match": f'"other", W/{etag}'}).status_code == 304
    assert target.get("/static/app.js", headers={"if-none-match": "*"}).status_code == 304
    assert target.get("/static/app.js", headers={"if-none-match": '"other"'}).status_code == 200
    assert target.get("/static/app.js", headers={"if-match": '"other"'}).status_code == 412
    assert target.get("/static/app.js", headers={"if-match": etag}).status_code == 200


def test_last_modified_gives_304_and_etag_takes_precedence(target: Target, site: Site) -> None:
    first = target.get("/static/app.js")
    modified = first.headers["last-modified"]
    assert modified == formatdate(int((site.root / "app.js").stat().st_mtime), usegmt=True)
    assert target.get("/static/app.js", headers={"if-modified-since": modified}).status_code == 304
    assert (
        target.get("/static/app.js", headers={"if-modified-since": "Thu, 01 Jan 2004 00:00:00 GMT"}).status_code == 200
    )
    assert target.get("/static/app.js", headers={"if-modified-since": "not a date"}).status_code == 200
    # RFC 9110 §13.2.2: If-None-Match present means If-Modified-Since is not looked at.
    both = {"if-modified-since": modified, "if-none-match": '"other"'}
    assert target.get("/static/app.js", headers=both).status_code == 200
    old = "Thu, 01 Jan 2004 00:00:00 GMT"
    assert target.get("/static/app.js", headers={"if-unmodified-since": old}).status_code == 412


@pytest.mark.parametrize(
    ("range_field", "start", "end"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=50000-70000", 50000, 70001),
        ("bytes=-100", len(DATA) - 100, len(DATA)),
        ("bytes=100000-", 100000, len(DATA)),
        ("bytes=1000-999999999", 1000, len(DATA)),
    ],
)
def test_single_ranges(target: Target, range_field: str, start: int, end: int) -> None:
    response = target.get("/static/data.bin", headers={"range": range_field})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start)
    assert response.content == DATA[start:end]


def test_unsatisfiable_and_ignored_ranges(target: Target) -> None:
    for field in ("bytes=102400-", "bytes=999999-1000000", "bytes=-0"):
        response = target.get("/static/data.bin", headers={"range": field})
        assert response.status_code == 416, field
        assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    # Several ranges, other units and bad syntax: the whole file (documented in static.md).
    for field in ("bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=x-y"):
        response = target.get("/static/data.bin", headers={"range": field})
        assert response.status_code == 200 and response.content == DATA, field


def test_if_range(target: Target) -> None:
    head = target.get("/static/data.bin")
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    cases = {etag: 206, '"stale"': 200, f"W/{etag}": 200, modified: 206, "Thu, 01 Jan 2004 00:00:00 GMT": 200}
    for validator, status in cases.items():
        response = target.get("/static/data.bin", headers={"range": "bytes=0-99", "if-range": validator})
        assert response.status_code == status, validator
        assert response.content == (DATA[:100] if status == 206 else DATA)


def test_head(target: Target) -> None:
    response = target.client.head(target.url + "/static/data.bin")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "application/octet-stream"
    # Ranges are defined for GET only (RFC 9110 §14.2).
    ranged = target.client.head(target.url + "/static/data.bin", headers={"range": "bytes=0-9"})
    assert ranged.status_code == 200 and ranged.headers["content-length"] == str(len(DATA))


def test_head_keeps_the_connection_usable(plain_server: RunningServer) -> None:
    with RawClient(plain_server.port) as client:
        client.request("HEAD", "/static/data.bin")
        response, body = client.response()
        assert response.status_code == 200 and body == b""
        client.request("GET", "/static/app.js")
        response, body = client.response()
        assert response.status_code == 200 and body == JS


def test_large_file_arrives_intact(target: Target, site: Site, sendfile_bytes: list[int] | None) -> None:
    digest = hashlib.sha256()
    with target.client.stream("GET", target.url + "/static/big.bin") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(BIG_SIZE)
        for chunk in response.iter_raw():
            digest.update(chunk)
    assert digest.hexdigest() == site.big_digest
    if sendfile_bytes is None:
        return
    if target.name == "h1":
        assert sum(sendfile_bytes) == BIG_SIZE  # the kernel sent it, not a read/write loop
    else:
        assert sendfile_bytes == []  # TLS and HTTP/2 read chunks


def test_range_of_a_large_file_uses_sendfile_from_the_offset(
    plain_server: RunningServer, site: Site, sendfile_bytes: list[int] | None
) -> None:
    if sendfile_bytes is None:
        pytest.skip("no os.sendfile on this platform")
    start, end = 5_000_000, 7_000_000
    with httpx.Client(base_url=plain_server.url) as client:
        response = client.get("/static/big.bin", headers={"range": f"bytes={start}-{end - 1}"})
    assert response.status_code == 206 and len(response.content) == end - start
    with (site.root / "big.bin").open("rb") as handle:
        handle.seek(start)
        assert response.content == handle.read(end - start)
    assert sum(sendfile_bytes) == end - start


def test_cache_control_max_age_zero(site: Site, app: RecordingApp) -> None:
    with running_server(app, static_max_age=0, **static_options(site)) as server:
        response = httpx.get(server.url + "/static/app.js")
    assert response.headers["cache-control"] == "no-cache"


# -- precompressed siblings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "coding", "body"),
    [
        ("br", "br", BROTLI),
        ("gzip, deflate, br", "br", BROTLI),
        ("gzip", "gzip", gzip.compress(JS)),
        ("br;q=0, gzip", "gzip", gzip.compress(JS)),
        ("gzip;q=1, br;q=0.5", "gzip", gzip.compress(JS)),
        ("*", "br", BROTLI),
        ("*;q=0, gzip", "gzip", gzip.compress(JS)),
        ("br;q=0, gzip;q=0", None, JS),
        ("identity", None, JS),
        ("", None, JS),
    ],
)
def test_precompressed_siblings(plain_server: RunningServer, accept: str, coding: str | None, body: bytes) -> None:
    status, fields, received = raw_response(plain_server.port, "/static/comp.js", [("accept-encoding", accept)])
    assert status == 200 and fields["vary"] == "Accept-Encoding"
    assert fields.get("content-encoding") == coding
    assert fields["content-type"] == "text/javascript; charset=utf-8"
    # The payload's bytes: gzip output differs per call, so compare gzip by its content.
    if coding == "gzip":
        assert gzip.decompress(received) == JS
    else:
        assert received == body


def test_precompressed_over_http2_with_range_and_etag(tls_server: RunningServer, cert_files: CertFiles) -> None:
    with httpx.Client(http2=True, verify=cert_files.client_context) as client:
        headers = {"accept-encoding": "br"}
        with client.stream("GET", tls_server.url + "/static/comp.js", headers=headers) as response:
            assert response.http_version == "HTTP/2"
            assert response.headers["content-encoding"] == "br" and response.headers["vary"] == "Accept-Encoding"
            assert b"".join(response.iter_raw()) == BROTLI
            br_etag = response.headers["etag"]
        plain = client.get(tls_server.url + "/static/comp.js", headers={"accept-encoding": "identity"})
        assert plain.headers["etag"] != br_etag and plain.headers["vary"] == "Accept-Encoding"
        with client.stream(
            "GET", tls_server.url + "/static/comp.js", headers={**headers, "range": "bytes=0-3"}
        ) as part:
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes 0-3/{len(BROTLI)}"
            assert b"".join(part.iter_raw()) == BROTLI[:4]
        again = client.get(tls_server.url + "/static/comp.js", headers={**headers, "if-none-match": br_etag})
        assert again.status_code == 304 and again.headers["vary"] == "Accept-Encoding"


def test_only_gzip_sibling_and_sibling_symlink_out_of_dir(plain_server: RunningServer, site: Site) -> None:
    status, fields, body = raw_response(plain_server.port, "/static/only-gz.css", [("accept-encoding", "br, gzip")])
    assert status == 200 and fields["content-encoding"] == "gzip" and gzip.decompress(body) == b"body{}"
    needs_symlinks(site)
    status, fields, body = raw_response(plain_server.port, "/static/evil.js", [("accept-encoding", "gzip")])
    assert status == 200 and body == JS and "content-encoding" not in fields and "vary" not in fields


# -- what is not served, and what goes to the app --------------------------------------

TRAVERSALS = [
    b"/static/../outside/secret.txt",
    b"/static/sub/../../outside/secret.txt",
    b"/static/%2e%2e/outside/secret.txt",
    b"/static/%2E%2E/outside/secret.txt",
    b"/static/.%2e/outside/secret.txt",
    b"/static/..%2foutside%2fsecret.txt",
    b"/static/sub%2f..%2f..%2foutside/secret.txt",
    b"/static/%2fetc%2fpasswd",
    b"/static//etc/passwd",
    b"/static/..\\outside\\secret.txt",
    b"/static/%5c..%5coutside%5csecret.txt",
    b"/static/app.js%00.png",
    b"/static/%00",
    b"/static/C:/Windows/win.ini",
    b"/static/C%3a%5cWindows%5cwin.ini",
    b"/static/app.js::$DATA",
    b"/static/app.js.",
    b"/static/nul",
    b"/static/con.txt",
    b"/static/.hidden",
    b"/static/%2ehidden",
    b"/static/sub/./index.html",
    b"/static/%ff%fe",
    b"/static/link_out.txt",
    b"/static/dir_out/secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS, ids=[path.decode("latin-1") for path in TRAVERSALS])
def test_no_escape_from_the_folder(plain_server: RunningServer, app: RecordingApp, site: Site, path: bytes) -> None:
    if b"link" in path or b"dir_out" in path:
        needs_symlinks(site)
    before = app.calls()
    data = raw_get(plain_server.port, path)
    assert status_of(data) == 404, data[:200]
    assert b"SECRET" not in data and b"hidden" not in data.split(b"\r\n\r\n", 1)[1]
    assert app.calls() == before


@pytest.mark.parametrize(
    "path", [b"/static/app.js?v=123", b"/static/app%2Ejs", b"http://x/static/app.js", b"/static/sub/../app.js"]
)
def test_equivalent_targets_are_served(plain_server: RunningServer, path: bytes) -> None:
    data = raw_get(plain_server.port, path)
    if b".." in path:  # never normalised: a dot segment is refused, not resolved
        assert status_of(data) == 404
    else:
        assert status_of(data) == 200 and data.endswith(JS)


def test_symlink_inside_the_folder_is_served(plain_server: RunningServer, site: Site) -> None:
    needs_symlinks(site)
    response = httpx.get(plain_server.url + "/static/link_in.js")
    assert response.status_code == 200 and response.content == JS


def test_symlink_in_the_folder_path_is_followed_per_request(app: RecordingApp, tmp_path: Path) -> None:
    # A deploy switches "current" from one release to the next while the server runs.
    for release in ("one", "two"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "v.txt").write_text(release)
    current = tmp_path / "current"
    try:
        current.symlink_to(tmp_path / "one", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks cannot be created here")
    with running_server(app, static=(f"/static/={current}",), lifespan="off") as server:
        assert httpx.get(server.url + "/static/v.txt").text == "one"
        (tmp_path / "next").symlink_to(tmp_path / "two", target_is_directory=True)
        os.replace(tmp_path / "next", current)
        assert httpx.get(server.url + "/static/v.txt").text == "two"


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/folder", "/static/folder/", "/static/folder/missing", "/other/app.js", "/static"],
)
def test_no_file_goes_to_the_app(plain_server: RunningServer, app: RecordingApp, path: str) -> None:
    response = httpx.get(plain_server.url + path)
    assert response.status_code == 200 and response.text == f"app:{path}"
    assert app.calls()[-1] == path


def test_folder_with_trailing_slash_serves_index(target: Target) -> None:
    response = target.get("/static/sub/")
    assert response.status_code == 200 and response.content == b"<p>index</p>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_other_methods_get_405_on_files_and_go_to_the_app_elsewhere(target: Target, app: RecordingApp) -> None:
    response = target.client.post(target.url + "/static/app.js", content=b"x")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    response = target.client.post(target.url + "/static/missing.js", content=b"x")
    assert response.status_code == 200 and app.calls()[-1] == "/static/missing.js"


@pytest.mark.parametrize(
    ("error", "status"), [(PermissionError(13, "Permission denied"), 403), (FileNotFoundError(2, "gone"), 404)]
)
def test_read_errors_give_a_status_and_one_log_line(
    plain_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: OSError,
    status: int,
) -> None:
    def failing_open(path: str) -> int:
        raise error

    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="gateway")
    monkeypatch.setattr(static.platform, "open_file_for_reading", failing_open)
    response = httpx.get(plain_server.url + "/static/app.js")
    assert response.status_code == status
    lines = [record for record in caplog.records if "static file" in record.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "app.js" in lines[0].getMessage()
    monkeypatch.undo()
    assert httpx.get(plain_server.url + "/static/app.js").status_code == 200  # still serving


def test_access_log_lines_for_static_responses(
    site: Site, app: RecordingApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.INFO, logger="gateway.access")
    with running_server(app, access_log=True, **static_options(site)) as server:
        with httpx.Client(base_url=server.url) as client:
            client.get("/static/data.bin", headers={"range": "bytes=0-9"})
            client.get("/static/nothing-here")
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert any('"GET /static/data.bin HTTP/1.1" 206 10 ' in line for line in lines), lines
    assert any('"GET /static/nothing-here HTTP/1.1" 200 ' in line for line in lines), lines


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_range_and_conditional(plain_server: RunningServer, tmp_path: Path) -> None:
    url = plain_server.url + "/static/data.bin"
    output = tmp_path / "part"
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-r", "100-199", "-o", str(output), "-D", "-", url],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert result.stdout.startswith("HTTP/1.1 206")
    assert "content-range: bytes 100-199/102400" in result.stdout.lower()
    assert output.read_bytes() == DATA[100:200]
    etag = next(
        line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.lower().startswith("etag:")
    )
    conditional = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            os.devnull,
            "-w",
            "%{http_code}",
            "-H",
            f"If-None-Match: {etag}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert conditional.stdout == "304"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_over_http2_downloads_the_large_file(
    tls_server: RunningServer, cert_files: CertFiles, site: Site, tmp_path: Path
) -> None:
    output = tmp_path / "big"
    command = ["curl", "-sS", "--max-time", "30", "--http2", "--cacert", str(cert_files.ca), "-o", str(output)]
    result = subprocess.run(
        [*command, "-w", "%{http_version} %{http_code}", tls_server.url + "/static/big.bin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == "2 200"
    assert hashlib.sha256(output.read_bytes()).hexdigest() == site.big_digest


# -- ASGI Path Send --------------------------------------------------------------------


def test_pathsend_sends_the_file(target: Target, site: Site, sendfile_bytes: list[int] | None) -> None:
    digest = hashlib.sha256()
    with target.client.stream("GET", target.url + "/send/big.bin") as response:
        assert response.status_code == 200 and response.headers["x-pathsend-advertised"] == "yes"
        for chunk in response.iter_raw():
            digest.update(chunk)
    assert digest.hexdigest() == site.big_digest
    if sendfile_bytes is not None:
        assert sum(sendfile_bytes) == (BIG_SIZE if target.name == "h1" else 0)


def test_pathsend_without_content_length_is_chunked(plain_server: RunningServer, site: Site) -> None:
    (site.root / "chunked.bin").write_bytes(DATA)
    response = httpx.get(plain_server.url + "/send/chunked.bin")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == DATA


def test_pathsend_head_sends_no_body(target: Target) -> None:
    response = target.client.head(target.url + "/send/data.bin")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize("name", ["relative", "missing", "folder", "number"])
def test_pathsend_misuse_is_a_500(target: Target, name: str) -> None:
    response = target.get(f"/send/{name}")
    assert response.status_code == 500 and response.text == "Internal Server Error"


# -- configuration ---------------------------------------------------------------------


def test_config_validates_static_entries(site: Site, tmp_path: Path) -> None:
    Config(static=(f"/static/={site.root}", f"/media/={site.root / 'sub'}"), static_max_age=0)
    cases = {
        f"static/={site.root}": "must start and end with '/'",
        f"/static={site.root}": "must start and end with '/'",
        str(site.root): "expected URL_PREFIX=DIR",
        "/static/=": "expected URL_PREFIX=DIR",
        f"/static/={tmp_path / 'missing'}": "does not exist",
        f"/static/={site.root / 'app.js'}": "is not a directory",
    }
    for entry, message in cases.items():
        with pytest.raises(ConfigError, match="--static") as caught:
            Config(static=(entry,))
        assert message in str(caught.value), entry
    with pytest.raises(ConfigError, match="only once"):
        Config(static=(f"/s/={site.root}", f"/s/={site.root}"))
    with pytest.raises(ConfigError, match="--static-max-age"):
        Config(static_max_age=-1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--static", "/static/=/no/such/folder"],
            "--static '/static/=/no/such/folder': DIR '/no/such/folder' does not exist",
        ),
        (["--static", "static/=."], "URL_PREFIX must start and end with '/'"),
        (["--static-max-age", "-5"], "--static-max-age must be 0 (no-cache) or more"),
    ],
)
def test_cli_reports_static_errors_in_one_line(arguments: list[str], message: str) -> None:
    result = run_gateway(*arguments, "tests.apps.basic:app")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asgigw: error: ") and message in lines[0], result.stderr


def test_without_static_the_context_has_none() -> None:
    from gateway.context import ServerContext

    assert ServerContext(config=Config(), app=lambda *args: None).static is None


# -- a client that stops reading ---------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["sendfile", "tls-chunks"])
def test_client_that_stops_reading_is_dropped(site: Site, app: RecordingApp, cert_files: CertFiles, tls: bool) -> None:
    tls_options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key), "http2": False} if tls else {}
    with running_server(app, send_timeout=0.5, **tls_options, **static_options(site)) as server:
        context = cert_files.client_context if tls else None
        with RawClient(server.port, timeout=10, context=context) as client:
            client.request(target="/static/big.bin")
            time.sleep(2.5)  # read nothing: the server's sends stall past --send-timeout
            data, closed = client.read_until_closed(timeout=10)
        assert closed and len(data) < BIG_SIZE
        assert httpx.get(server.url + "/static/app.js", verify=cert_files.client_context).status_code == 200


def test_loop_without_sendfile_falls_back_to_chunks(
    plain_server: RunningServer, site: Site, monkeypatch: pytest.MonkeyPatch, sendfile_bytes: list[int] | None
) -> None:
    # An event loop that lacks loop.sendfile() (AbstractEventLoop's NotImplementedError).
    async def no_sendfile(*args: Any, **kwargs: Any) -> int:
        raise NotImplementedError

    monkeypatch.setattr(type(plain_server.loop), "sendfile", no_sendfile)
    digest = hashlib.sha256()
    with httpx.Client(timeout=30) as client, client.stream("GET", plain_server.url + "/static/big.bin") as response:
        for chunk in response.iter_raw():
            digest.update(chunk)
    assert digest.hexdigest() == site.big_digest
    assert not sendfile_bytes


def test_request_body_ending_mid_file_keeps_the_exchange_in_order(plain_server: RunningServer) -> None:
    # The request's end arrives while the file is still going out; the next request on the
    # connection must be answered after the whole file, not in the middle of it.
    with RawClient(plain_server.port, timeout=20) as client:
        client.send(b"GET /static/big.bin HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.5)
        client.send(b"0\r\n\r\nGET /static/app.js HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data, closed = client.read_until_closed(timeout=20)
    assert closed
    head, _, rest = data.partition(b"\r\n\r\n")
    assert status_of(head) == 200 and b"content-length: %d" % BIG_SIZE in head
    second = rest[BIG_SIZE:]
    assert status_of(second) == 200 and second.endswith(JS)
