"""``--metrics-bind``: the counters of :mod:`gateway.metrics` in Prometheus text format.

prometheus-client (the ``metrics`` extra) does the exposition. Serving processes keep
counting in plain ints (``Metrics``) and a timer copies the changes into prometheus-client
objects once a second (and once more at shutdown), so a request never pays for them.

With ``--workers``, prometheus-client's multi-process mode joins the processes: the
supervisor makes a private folder and puts it in ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start (they inherit it), each process's values live in files there, and the
supervisor serves ``/metrics`` from all of them. One process serves its own registry. The
metrics listener is never one of the app's listeners.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from gateway.config import BindAddress, Config
from gateway.metrics import Metrics

log = logging.getLogger("gateway.error")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 1.0
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsUnavailable(Exception):
    """Metrics cannot be served (no prometheus-client, an address in use): one line."""


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MetricsUnavailable("--metrics-bind needs the metrics extra: pip install 'asgigw[metrics]'") from None
    return prometheus_client


class PrometheusMetrics:
    """One process's prometheus-client objects, fed from its :class:`Metrics`."""

    def __init__(
        self, metrics: Metrics, registry: Any, open_connections: Callable[[], Mapping[str, int]] = dict
    ) -> None:
        client = _client()
        self.metrics = metrics
        # Counted when flushing, from the server's set of connections: nothing to bump on
        # every connect, close and h2c upgrade.
        self._open_connections = open_connections
        Counter, Gauge, Histogram = client.Counter, client.Gauge, client.Histogram
        own = {"registry": registry}
        self._requests = Counter(
            "asgigw_requests", "Responses sent, by method, status and HTTP version.",
            ["method", "status", "http_version"], **own,
        )  # fmt: skip
        self._duration = Histogram(
            "asgigw_request_duration_seconds", "Time from request head to the end of the response.",
            buckets=DURATION_BUCKETS, **own,
        )  # fmt: skip
        self._received = Counter("asgigw_received_bytes", "Request body bytes received.", **own)
        self._sent = Counter("asgigw_sent_bytes", "Response body bytes sent.", **own)
        live = {"multiprocess_mode": "livesum", **own}
        self._connections = Gauge(
            "asgigw_open_connections", "Open client connections by protocol.", ["protocol"], **live
        )
        self._websockets = Gauge("asgigw_open_websockets", "Open WebSocket sessions.", **live)
        self._handshakes = Counter("asgigw_tls_handshakes", "TLS handshakes completed.", **own)
        self._handshake_failures = Counter("asgigw_tls_handshake_failures", "TLS handshakes that failed.", **own)
        self._streams = Counter("asgigw_http2_streams", "HTTP/2 streams opened by clients.", **own)
        self._resets = Counter("asgigw_http2_resets", "HTTP/2 streams reset, by either side.", **own)
        self._rejections = Counter(
            "asgigw_rejections", "Requests and connections refused, by reason.", ["reason"], **own
        )
        self._app_exceptions = Counter("asgigw_app_exceptions", "Exceptions raised by the application.", **own)
        self._worker_restarts = Counter("asgigw_worker_restarts", "Worker processes started again.", **own)
        self._seen: dict[str, Any] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Flush now and then every second on the running loop."""
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.start)

    def stop(self) -> None:
        """Stop the timer after one last flush (values of a stopping worker are kept)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Copy what changed since the last flush into prometheus-client."""
        metrics = self.metrics
        for key, count in metrics.requests.items():
            self._add(("requests", key), count, self._requests.labels(*key))
        durations, metrics.durations = metrics.durations, []
        for duration in durations:
            self._duration.observe(duration)
        self._add("received", metrics.received_bytes, self._received)
        self._add("sent", metrics.sent_bytes, self._sent)
        for protocol, count in self._open_connections().items():
            self._connections.labels(protocol).set(count)
        self._websockets.set(metrics.websockets)
        self._add("handshakes", metrics.tls_handshakes, self._handshakes)
        self._add("handshake_failures", metrics.tls_handshake_failures, self._handshake_failures)
        self._add("streams", metrics.h2_streams, self._streams)
        self._add("resets", metrics.h2_resets, self._resets)
        for reason, count in metrics.rejections.items():
            self._add(("rejections", reason), count, self._rejections.labels(reason))
        self._add("app_exceptions", metrics.app_exceptions, self._app_exceptions)
        self._add("worker_restarts", metrics.worker_restarts, self._worker_restarts)

    def _add(self, key: object, current: int, counter: Any) -> None:
        name = str(key)
        delta = current - self._seen.get(name, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[name] = current


class MetricsEndpoint:
    """The ``/metrics`` listener (prometheus-client's own small HTTP server, in a thread)."""

    def __init__(self, address: BindAddress, registry: Any) -> None:
        client = _client()
        try:
            self._server, self._thread = client.start_http_server(address.port, address.host, registry=registry)
        except OSError as exc:
            from gateway.server import StartupError

            raise StartupError(
                f"cannot listen on {address.url_host()}:{address.port} (--metrics-bind): {exc.strerror}"
            ) from None
        self.port = int(self._server.server_address[1])
        log.info("metrics at http://%s:%d/metrics", address.url_host(), self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def single_process_registry() -> Any:
    """A registry for one process's own metrics (not prometheus-client's global one)."""
    return _client().CollectorRegistry(auto_describe=True)


class SharedMetricsFolder:
    """The supervisor's multi-process folder: made before the workers start, removed at the end."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="asgigw-metrics-")
        # Before prometheus-client is imported here or in any worker (they inherit it).
        os.environ[MULTIPROCESS_ENV] = self.path
        client = _client()
        # Any-typed: prometheus-client's multiprocess module has no type hints.
        self._multiprocess: Any = importlib.import_module("prometheus_client.multiprocess")
        self.registry = client.CollectorRegistry()
        self._multiprocess.MultiProcessCollector(self.registry, path=self.path)

    def process_exited(self, pid: int) -> None:
        """Drop a dead worker's gauges (its counters stay counted)."""
        self._multiprocess.mark_process_dead(pid, self.path)

    def remove(self) -> None:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(self.path, ignore_errors=True)


class ServedMetrics:
    """A serving process's export and, unless a supervisor serves them, its endpoint."""

    def __init__(
        self, metrics: Metrics, config: Config, open_connections: Callable[[], Mapping[str, int]], *, endpoint: bool
    ) -> None:
        assert config.metrics_bind is not None
        registry = single_process_registry() if endpoint else None
        self.export = PrometheusMetrics(metrics, registry, open_connections)
        self.endpoint = MetricsEndpoint(BindAddress.parse(config.metrics_bind), registry) if endpoint else None
        self.export.start()

    def stop(self) -> None:
        self.export.stop()
        if self.endpoint is not None:
            self.endpoint.close()


class SupervisorMetrics:
    """--metrics-bind with workers: the shared folder, the supervisor's counts, the endpoint."""

    def __init__(self, address: BindAddress) -> None:
        # The folder first: the workers started after this inherit it.
        self.folder = SharedMetricsFolder()
        self.counts = Metrics()
        self.export = PrometheusMetrics(self.counts, None)
        self.export.start()
        try:
            self.endpoint = MetricsEndpoint(address, self.folder.registry)
        except BaseException:
            self.export.stop()
            self.folder.remove()
            raise

    def worker_exited(self, pid: int) -> None:
        self.folder.process_exited(pid)

    def close(self) -> None:
        self.export.stop()
        self.endpoint.close()
        self.folder.remove()
