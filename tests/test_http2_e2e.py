"""HTTP/2 end to end with independent clients: httpx (h2), curl and nghttp (nghttp2)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest
from hyperframe.frame import HeadersFrame

from tests.conftest import CertFiles, RunningServer, running_server
from tests.test_http2_peer import INTERNAL_ERROR, FramePeer, app, h2_context


def tls_options(cert_files: CertFiles) -> dict[str, str]:
    return {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}


def test_httpx_over_tls_speaks_http2(cert_files: CertFiles) -> None:
    with running_server(app, **tls_options(cert_files)) as server:
        with httpx.Client(http2=True, verify=cert_files.client_context) as client:
            response = client.get(server.url + "/info", headers={"cookie": "a=1"})
            assert response.http_version == "HTTP/2"
            assert response.status_code == 200
            assert "date" in response.headers
            info = response.json()
            assert info["http_version"] == "2"
            assert info["method"] == "GET"
            assert ["cookie", "a=1"] in info["headers"]


def test_many_concurrent_streams_on_one_connection(cert_files: CertFiles) -> None:
    clients: set[Any] = set()
    running = [0, 0]  # apps running now, most at once

    async def watched_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            clients.add(scope["client"])
        running[0] += 1
        running[1] = max(running)
        try:
            await app(scope, receive, send)
        finally:
            running[0] -= 1

    async def main(server: RunningServer) -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=cert_files.client_context) as client:
            requests = [client.get(server.url + "/sleep?0.3") for _ in range(60)]
            requests += [client.post(server.url + "/echo", content=b"%d" % n) for n in range(60)]
            return await asyncio.gather(*requests)

    with running_server(watched_app, **tls_options(cert_files)) as server:
        responses = asyncio.run(main(server))
    assert all(response.http_version == "HTTP/2" for response in responses)
    assert [response.text for response in responses[:60]] == ["slept"] * 60
    assert [response.text for response in responses[60:]] == [str(n) for n in range(60)]
    # One connection (one client address), its streams served side by side, not in turn.
    assert len(clients) == 1
    assert running[1] > 1


def test_large_upload_and_download(cert_files: CertFiles) -> None:
    upload = bytes(range(256)) * 20000  # 5 MB, far beyond every window
    with running_server(app, **tls_options(cert_files)) as server:
        with httpx.Client(http2=True, verify=cert_files.client_context, timeout=30) as client:
            echoed = client.post(server.url + "/echo", content=upload)
            assert echoed.http_version == "HTTP/2"
            assert echoed.headers["x-length"] == str(len(upload))
            assert hashlib.sha256(echoed.content).digest() == hashlib.sha256(upload).digest()
            download = client.get(server.url + "/download?8000000")
            assert len(download.content) == 8_000_000


def test_trailers_and_early_hints_over_http2(cert_files: CertFiles) -> None:
    with running_server(app, **tls_options(cert_files)) as server:
        with FramePeer(server, tls=h2_context(cert_files)) as peer:
            peer.request(1, b"/trailers")
            response = peer.response(1)
            assert response["status"] == 200
            assert response["body"] == b"body"
            assert response["trailers"] == [(b"x-checksum", b"abc")]
            peer.request(3, b"/hints")
            response = peer.response(3)
            assert response["informational"] == [
                (103, [(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")])
            ]
            assert response["status"] == 200
            assert response["body"] == b"hinted"


def test_app_errors_affect_only_their_stream(cert_files: CertFiles) -> None:
    with running_server(app, **tls_options(cert_files)) as server:
        with FramePeer(server, tls=h2_context(cert_files)) as peer:
            peer.request(1, b"/sleep?0.3")
            peer.request(3, b"/fail-before")
            peer.request(5, b"/fail-after")
            assert peer.response(3)["status"] == 500
            failed = peer.response(5)
            assert failed["status"] == 200
            assert failed["reset"] == INTERNAL_ERROR
            assert peer.response(1)["body"] == b"slept"
            peer.request(7, b"/info")
            assert peer.response(7)["status"] == 200


def test_disconnect_reaches_app_when_client_resets(cert_files: CertFiles) -> None:
    seen: list[str] = []

    async def waiting_app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        message = await receive()  # type: ignore[operator]
        seen.append(message["type"])
        try:
            message = await receive()  # type: ignore[operator]
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append(message["type"])

    from hyperframe.frame import RstStreamFrame

    with running_server(waiting_app) as server, FramePeer(server) as peer:
        peer.request(1, b"/", b"POST", end_stream=False)
        peer.data(1, b"abc")
        for _ in range(50):
            if seen:
                break
            time.sleep(0.02)
        peer.send(RstStreamFrame(1, error_code=0x8))
        for _ in range(100):
            if len(seen) == 2:
                break
            time.sleep(0.02)
    # The reset cancels the app task: the waiting receive() is cancelled (or, had the
    # task not been waiting, it would see http.disconnect); it never sees more body.
    assert seen[0] == "http.request"
    assert seen[1:] in (["cancelled"], ["http.disconnect"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_tls(cert_files: CertFiles) -> None:
    with running_server(app, **tls_options(cert_files)) as server:
        result = subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", str(cert_files.ca), "-w", "\n%{http_version}", server.url + "/info"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2", result.stderr
    assert json.loads(body)["http_version"] == "2"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("flag", ["--http2-prior-knowledge", "--http2"])
def test_curl_h2c(flag: str) -> None:
    # --http2 on http:// sends "Upgrade: h2c" (RFC 7540 §3.2).
    with running_server(app) as server:
        result = subprocess.run(
            # One URL: curl 7.88 fails reusing a prior-knowledge connection (hypercorn too).
            ["curl", "-sS", flag, "-w", "\n%{http_version}\n", server.url + "/info"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    lines = result.stdout.split("\n")
    assert lines[1] == "2", result.stdout + result.stderr
    assert json.loads(lines[0])["http_version"] == "2"


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp (nghttp2-client) is not installed")
def test_nghttp_client_over_tls_and_h2c(cert_files: CertFiles) -> None:
    with running_server(app, **tls_options(cert_files)) as server:
        result = subprocess.run(
            ["nghttp", "-n", "-s", "-m", "20", server.url + "/download?300000"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(" 200 ") >= 1 or "200" in result.stdout
    with running_server(app) as server:
        result = subprocess.run(
            ["nghttp", "-v", server.url + "/echo", "-d", "-"],
            input="hello nghttp",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert ":status: 200" in result.stdout
        assert "hello nghttp" in result.stdout


async def length_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Declares content-length 10 and sends the body the path names."""
    if scope["type"] != "http":
        return
    body = {"/short": b"12345", "/long": b"12345678901", "/exact": b"1234567890"}[scope["path"]]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(("path", "reset"), [("/short", True), ("/long", True), ("/exact", False)])
def test_response_body_must_match_its_content_length(path: str, reset: bool) -> None:
    # RFC 9113 §8.1.1: a body that differs from its content-length is malformed; the client
    # must see a reset stream, not a response that looks complete.
    with running_server(length_app) as server, FramePeer(server) as peer:
        peer.request(1, path.encode())
        response = peer.response(1)
        assert response["status"] == 200
        assert (response["reset"] == INTERNAL_ERROR) is reset
        if not reset:
            assert response["body"] == b"1234567890"
        peer.request(3, path.encode(), b"HEAD")
        head = peer.response(3)
        assert (head["status"], head["body"], head["reset"]) == (200, b"", None)


def test_one_large_body_message_is_framed_whole(cert_files: CertFiles) -> None:
    payload = bytes(range(251)) * 12000  # 3 MB in a single http.response.body message

    async def one_shot(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})

    with running_server(one_shot, **tls_options(cert_files)) as server:
        with httpx.Client(http2=True, verify=cert_files.client_context, timeout=30) as client:
            response = client.get(server.url + "/")
    assert response.http_version == "HTTP/2"
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(payload).digest()


def test_expect_100_continue_over_http2() -> None:
    # RFC 9110 §10.1.1: the 100 comes once the app asks for the body, as a HEADERS frame.
    with running_server(app) as server, FramePeer(server) as peer:
        peer.request(1, b"/echo", b"POST", extra=[(b"expect", b"100-continue")], end_stream=False)
        interim = peer.read_until(lambda f: isinstance(f, HeadersFrame))[-1]
        assert interim.decoded == [(b":status", b"100")]  # type: ignore[attr-defined]
        peer.data(1, b"after continue", end_stream=True)
        response = peer.response(1)
        assert (response["status"], response["body"]) == (200, b"after continue")
