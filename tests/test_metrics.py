"""--metrics-bind (Prometheus, read back with prometheus-client's own text parser, under
load, one process and --workers) and --health-path, on real sockets."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time

import httpx
import pytest

from gateway.config import Config, ConfigError
from gateway.health import HealthCheck
from tests.apps.process import ServerProcess, gateway_process
from tests.test_workers import worker_pids

parser = pytest.importorskip("prometheus_client.parser", reason="the metrics extra is not installed")


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics by sample name: [(labels, value), ...]."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parser.text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if all(found.get(k) == v for k, v in labels.items()))


class Load:
    """HTTP/1.1 and HTTP/2 requests from two threads until stopped (bounded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = {"1.1": 0, "2": 0}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(http2,), daemon=True) for http2 in (False, True)]

    def _run(self, http2: bool) -> None:
        # http1=False: HTTP/2 with prior knowledge (h2c), as plain http:// never negotiates it.
        with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
            for _ in range(3000):
                if self._stop.is_set():
                    return
                response = client.get(self.url)
                assert response.status_code == 200
                self.done["2" if http2 else "1.1"] += 1

    def finished(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)


def eventually(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()  # type: ignore[operator]
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def metrics_port_of(server: ServerProcess) -> int:
    """The port the metrics listener got (``--metrics-bind 127.0.0.1:0``: no port races)."""
    return int(server.wait_for(r"metrics at http://127\.0\.0\.1:(\d+)/metrics").group(1))


def test_one_process_metrics_under_load() -> None:
    args = (
        "--port",
        "0",
        "--metrics-bind",
        "127.0.0.1:0",
        "--health-path",
        "/healthz",
        "tests.apps.basic:app",
    )
    with gateway_process(*args) as server:
        metrics_port = metrics_port_of(server)
        with Load(f"{server.url}/hello") as load:
            eventually(lambda: min(load.done.values()) >= 50)

            def counting_while_serving() -> None:
                during = scrape(metrics_port)  # values are copied once a second
                assert total(during, "asgigw_requests_total", method="GET", status="200") > 0
                assert total(during, "asgigw_open_connections", protocol="h2") >= 1
                assert not load.finished()

            eventually(counting_while_serving)
        assert httpx.post(f"{server.url}/upload", content=b"x" * 1000).status_code == 200
        assert httpx.get(f"{server.url}/healthz").text == "ok\n"
        counts = dict(load.done)

        def settled() -> None:
            samples = scrape(metrics_port)
            assert (
                total(samples, "asgigw_requests_total", method="GET", status="200", http_version="1.1") >= counts["1.1"]
            )
            assert total(samples, "asgigw_requests_total", method="GET", status="200", http_version="2") >= counts["2"]
            assert total(samples, "asgigw_requests_total", method="POST", status="200") == 1
            assert total(samples, "asgigw_received_bytes_total") == 1000
            assert total(samples, "asgigw_request_duration_seconds_count") >= sum(counts.values())
            assert total(samples, "asgigw_sent_bytes_total") > 0
            assert total(samples, "asgigw_http2_streams_total") >= counts["2"]

        eventually(settled)
        # The metrics are never on the app's listener.
        assert "asgigw_requests_total" not in httpx.get(f"{server.url}/metrics").text


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="kills a worker with SIGKILL")
def test_workers_share_one_endpoint() -> None:
    args = ("--port", "0", "--workers", "2", "--metrics-bind", "127.0.0.1:0", "tests.apps.pid:app")
    with gateway_process(*args) as server:
        metrics_port = metrics_port_of(server)
        pids = worker_pids(server, 2)
        served: set[int] = set()
        for _ in range(200):
            served.add(httpx.get(server.url, headers={"connection": "close"}).json()["pid"])
            if len(served) == 2:
                break
        count = 200 if len(served) < 2 else None

        def both_counted() -> None:
            assert total(scrape(metrics_port), "asgigw_requests_total", method="GET", status="200") >= 2

        eventually(both_counted)
        import os

        os.kill(pids[0], signal.SIGKILL)
        server.wait_for("starting a new one", 10)
        eventually(lambda: _assert_restarts(metrics_port), 15)
        assert count is None, "both workers answered"


def _assert_restarts(port: int) -> None:
    assert total(scrape(port), "asgigw_worker_restarts_total") == 1


def test_health_check_says_draining() -> None:
    draining = False
    check = HealthCheck("/healthz", lambda: draining)
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    asyncio.run(check({"type": "http", "path": "/healthz"}, receive, send))
    draining = True
    asyncio.run(check({"type": "http", "path": "/healthz"}, receive, send))
    assert [message.get("status") for message in sent if message["type"] == "http.response.start"] == [200, 503]
    assert (b"connection", b"close") in sent[2]["headers"]  # type: ignore[operator]
    assert sent[3]["body"] == b"draining\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bind": ("127.0.0.1:9000",), "metrics_bind": "127.0.0.1:9000"}, "must not be one of the app's listeners"),
        ({"metrics_bind": "nonsense"}, "--metrics-bind 'nonsense': expected HOST:PORT"),
        ({"health_path": "healthz"}, "--health-path 'healthz': must start with '/'"),
    ],
)
def test_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**options)  # type: ignore[arg-type]


def test_without_prometheus_client_the_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import metrics_export

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(metrics_export.MetricsUnavailable, match=r"pip install 'asgigw\[metrics\]'"):
        metrics_export.single_process_registry()


def test_websockets_and_app_exceptions() -> None:
    import websockets

    args = (
        "--port",
        "0",
        "--lifespan",
        "off",
        "--metrics-bind",
        "127.0.0.1:0",
        "tests.apps.metrics_app:app",
    )
    with gateway_process(*args) as server:
        metrics_port = metrics_port_of(server)
        assert httpx.get(f"{server.url}/boom").status_code == 500

        async def one_websocket() -> None:
            async with websockets.connect(server.url.replace("http", "ws")) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await asyncio.to_thread(eventually, lambda: _assert_total(metrics_port, "asgigw_open_websockets", 1))

        asyncio.run(one_websocket())
        eventually(lambda: _assert_total(metrics_port, "asgigw_open_websockets", 0))
        eventually(lambda: _assert_total(metrics_port, "asgigw_app_exceptions_total", 1))


def _assert_total(port: int, name: str, expected: float) -> None:
    assert total(scrape(port), name) == expected


def test_rejections_by_reason() -> None:
    import socket

    args = (
        "--port",
        "0",
        "--metrics-bind",
        "127.0.0.1:0",
        "--header-timeout",
        "0.5",
        "tests.apps.basic:app",
    )
    with gateway_process(*args) as server:
        metrics_port = metrics_port_of(server)
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # Content-Length and Transfer-Encoding together: a smuggling attempt (400).
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more: the head times out
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed when --header-timeout passes

        def counted() -> None:
            samples = scrape(metrics_port)
            assert total(samples, "asgigw_rejections_total", reason="invalid_request") == 1
            assert total(samples, "asgigw_rejections_total", reason="timeout") == 1

        eventually(counted)
