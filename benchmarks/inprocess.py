"""Server CPU per HTTP/1.1 request without sockets: asgigw and uvicorn in one process.

``python -m benchmarks.run`` measures whole servers under wrk; its figures include the
kernel's share (reads, writes, epoll), which is the same for every server, and the noise of
a shared machine. This script measures only what a server's own code costs: each server's
protocol object is fed a request as bytes, through a transport that records the response,
on one uvloop loop, and the process CPU time per request is compared in interleaved blocks
(so both see the same machine state). A "null" protocol that answers without parsing gives
the harness's own cost, which the ratio leaves out.

    python -m benchmarks.inprocess                  # minimal request head
    python -m benchmarks.inprocess --browser-headers
    python -m benchmarks.inprocess --profile asgigw # cProfile of asgigw's path, top functions
    python -m benchmarks.inprocess --loop asyncio --servers asgigw-h11,uvicorn-h11  # no fast extra

Needs the bench extra (uvicorn[standard]) and the fast extra (uvloop, httptools).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from benchmarks.app import app

MINIMAL_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
# The same twelve fields as benchmarks.run --browser-headers sends, plus Host.
BROWSER_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Cache-Control: no-cache\r\nPragma: no-cache\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nUpgrade-Insecure-Requests: 1\r\n"
    b"Cookie: sessionid=abcdef0123456789; csrftoken=0123456789abcdef0123456789abcdef\r\n\r\n"
)
BLOCK = 2000


class RecordingTransport:
    """The transport methods the servers call; a write completes the request under way."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        answered = self.answered
        if answered is not None and not answered.done():
            answered.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class NullProtocol:
    """Answers every request without looking at it: the harness's own cost."""

    def __init__(self, transport: RecordingTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._transport.write(b"HTTP/1.1 200 OK\r\n\r\n")


def asgigw_protocol(parser: str) -> Callable[[RecordingTransport], Any]:
    from gateway.config import Config
    from gateway.connection import Connection
    from gateway.context import ServerContext

    def make(transport: RecordingTransport) -> Any:
        context = ServerContext(config=Config(http1_parser=parser), app=app)  # type: ignore[arg-type]
        context.loop = asyncio.get_running_loop()
        connection = Connection(context)
        connection.connection_made(transport)  # type: ignore[arg-type]
        return connection

    return make


def uvicorn_protocol(http: str) -> Callable[[RecordingTransport], Any]:
    from uvicorn.config import Config
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    def make(transport: RecordingTransport) -> Any:
        config = Config(app=app, lifespan="off", access_log=False, log_level="warning", http=http)
        config.load()
        kind = HttpToolsProtocol if http == "httptools" else H11Protocol
        protocol = kind(config, ServerState(), {})
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol

    return make


SERVERS: dict[str, Callable[[RecordingTransport], Any]] = {
    "asgigw": asgigw_protocol("httptools"),
    "asgigw-h11": asgigw_protocol("h11"),
    "uvicorn-httptools": uvicorn_protocol("httptools"),
    "uvicorn-h11": uvicorn_protocol("h11"),
    "null": NullProtocol,
}


async def serve_requests(protocol: Any, transport: RecordingTransport, request: bytes, count: int) -> None:
    """Feed ``count`` requests one after another, each once the previous one was answered."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(60):  # bounded: a server that stops answering fails the run
        for _ in range(count):
            answered = transport.answered = loop.create_future()
            protocol.data_received(request)
            await answered
            await asyncio.sleep(0)  # let the app task finish before the next request


async def compare(names: list[str], request: bytes, blocks: int) -> dict[str, float]:
    """CPU µs per request for each server, from ``blocks`` interleaved blocks of requests."""
    servers = {}
    for name in names:
        transport = RecordingTransport()
        servers[name] = (SERVERS[name](transport), transport)
        await serve_requests(*servers[name], request, BLOCK)  # warm up
    spent = dict.fromkeys(names, 0.0)
    for _ in range(blocks):
        for name, (protocol, transport) in servers.items():
            started = time.process_time()
            await serve_requests(protocol, transport, request, BLOCK)
            spent[name] += time.process_time() - started
    return {name: seconds / (blocks * BLOCK) * 1e6 for name, seconds in spent.items()}


async def profile(name: str, request: bytes) -> None:
    transport = RecordingTransport()
    protocol = SERVERS[name](transport)
    await serve_requests(protocol, transport, request, BLOCK)
    profiler = cProfile.Profile()
    profiler.enable()
    await serve_requests(protocol, transport, request, 10 * BLOCK)
    profiler.disable()
    stats = pstats.Stats(profiler)
    calls = sum(row[1] for row in stats.stats.values()) / (10 * BLOCK)  # type: ignore[attr-defined]
    print(f"{name}: {calls:.0f} function calls per request (C methods included)")
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="asgigw,asgigw-h11,uvicorn-httptools,uvicorn-h11")
    parser.add_argument("--blocks", type=int, default=20, help=f"interleaved blocks of {BLOCK} requests")
    parser.add_argument("--browser-headers", action="store_true", help="a 13-field browser-like head")
    parser.add_argument("--profile", metavar="SERVER", help="cProfile one server's path instead")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the loop every server runs on")
    options = parser.parse_args()
    request = BROWSER_REQUEST if options.browser_headers else MINIMAL_REQUEST
    if options.loop == "uvloop":
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
    else:
        run = asyncio.run
    if options.profile:
        run(profile(options.profile, request))
        return
    names = [*options.servers.split(","), "null"]
    results = run(compare(names, request, options.blocks))
    harness = results.pop("null")
    print(f"harness alone: {harness:.2f} µs per request (left out below)")
    print("| server | CPU µs per request | vs uvicorn-httptools |")
    print("|---|---:|---:|")
    reference = results.get("uvicorn-httptools")
    for name, micros in results.items():
        ratio = f"{(reference - harness) / (micros - harness):.2f}x" if reference else "-"
        print(f"| {name} | {micros - harness:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
