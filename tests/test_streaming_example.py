"""examples/streaming.py over real sockets: pieces arrive apart, Server-Sent Events resume."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

from examples.streaming import app
from tests.conftest import CertFiles, running_server

HTTP_VERSIONS = ["HTTP/1.1", "HTTP/2"]


def client_for(url: str, cert_files: CertFiles, version: str) -> httpx.Client:
    http2 = version == "HTTP/2"
    context = ssl.create_default_context(cafile=str(cert_files.ca))
    return httpx.Client(base_url=url, verify=context, http1=not http2, http2=http2, timeout=10, trust_env=False)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_stream_and_events(cert_files: CertFiles, version: str) -> None:
    tls = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    with (
        running_server(app, **tls) as server,
        client_for(f"https://localhost:{server.port}", cert_files, version) as client,
    ):
        arrivals: list[tuple[float, bytes]] = []
        with client.stream("GET", "/stream?pieces=3&interval=0.2") as response:
            assert response.http_version == version
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            arrivals.extend((time.monotonic(), chunk) for chunk in response.iter_raw())
        lines = b"".join(chunk for _, chunk in arrivals).decode().splitlines()
        assert [line.split(" at ")[0] for line in lines] == ["piece 1 of 3", "piece 2 of 3", "piece 3 of 3"]
        assert len(arrivals) == 3
        assert arrivals[-1][0] - arrivals[0][0] >= 0.3

        # A reconnecting EventSource sends the last id it saw; the stream goes on after it.
        events = client.get("/events?count=3&interval=0.05", headers={"last-event-id": "7"})
        assert events.headers["content-type"] == "text/event-stream"
        assert events.headers["cache-control"] == "no-cache"
        blocks = events.text.split("\n\n")
        assert blocks[0] == "retry: 2000" and blocks[-1] == ""
        ids = [block.splitlines()[0] for block in blocks[1:-1]]
        assert ids == ["id: 8", "id: 9", "id: 10"]
        assert all(block.splitlines()[1] == "event: tick" for block in blocks[1:-1])

        assert client.get("/").status_code == 200
        assert client.get("/elsewhere").status_code == 404
