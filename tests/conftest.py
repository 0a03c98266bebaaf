"""Shared fixtures: a real server on 127.0.0.1 in a background thread, trustme certificates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import settings as hypothesis_settings

from gateway import accelerators
from gateway.config import Config, installed
from gateway.server import Server

HTTP1_PARSERS = ["h11", "httptools"]


@dataclass
class RunningServer:
    """A server started by :func:`running_server`: where it listens and how to stop it."""

    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    exit_code: list[int] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.server.addresses[0][0]

    @property
    def port(self) -> int:
        return self.server.addresses[0][1]

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask for a graceful shutdown and wait for the thread to end."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_shutdown)
            self.thread.join(timeout)
        return self.exit_code[0] if self.exit_code else None


@contextlib.contextmanager
def running_server(
    app: Any,
    *,
    sockets: Sequence[socket.socket] = (),
    accept_in_thread: bool = False,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    **options: Any,
) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the ``with`` block ends.

    ``sockets`` and ``accept_in_thread`` go to ``Server`` (listening sockets bound by the
    test, accepted from a thread as Windows workers do); ``loop_factory`` builds the event
    loop (``uvloop.new_event_loop`` to test the fast extra's loop in process).
    """
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    config = Config(**options)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def target() -> None:
        loop = loop_factory()
        holder["loop"] = loop
        asyncio.set_event_loop(loop)

        async def main() -> int:
            server = Server(app, config, sockets=sockets, accept_in_thread=accept_in_thread)
            holder["server"] = server
            waiter = asyncio.ensure_future(server.started.wait())
            serving = asyncio.ensure_future(server.serve(handle_signals=False))
            await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()  # still pending when serve() ended during start-up
            ready.set()
            return await serving

        try:
            holder["exit"] = loop.run_until_complete(main())
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("server did not start within 15 s")
    if "error" in holder:
        raise holder["error"]
    server: Server = holder["server"]
    if not server.started.is_set():
        thread.join(5)
        raise RuntimeError(f"server exited during start-up with code {holder.get('exit')}")
    running = RunningServer(server=server, loop=holder["loop"], thread=thread)
    try:
        yield running
    finally:
        running.stop()
        if "exit" in holder:
            running.exit_code.append(holder["exit"])
        if "error" in holder:
            raise holder["error"]


@pytest.fixture(scope="module", params=HTTP1_PARSERS)
def http1_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests with each HTTP/1.1 parser (``--http1-parser auto`` picks it).

    Module-scoped, so a module's shared servers are built once per parser; they must
    request this fixture so they are rebuilt when it changes.
    """
    name: str = request.param
    if name == "httptools" and not installed("httptools"):
        pytest.skip("httptools is not installed (pip install 'asgigw[fast]')")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accelerators, "PREFERRED_HTTP1_PARSERS", (name,))
        yield name


@pytest.fixture(scope="session", autouse=True)
def isolated_dev_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ASGIGW_CA_DIR at a temporary folder for the whole run (subprocesses inherit it),
    so no test ever writes the development CA into the real user data folder."""
    folder = tmp_path_factory.mktemp("dev-ca")
    patch = pytest.MonkeyPatch()
    patch.setenv("ASGIGW_CA_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A leaf certificate for localhost, 127.0.0.1 and ::1."""
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@dataclass
class CertFiles:
    """PEM files on disk for a server certificate, its key and the CA."""

    cert: Path
    key: Path
    ca: Path

    @property
    def client_context(self) -> ssl.SSLContext:
        """A new client context trusting the CA on each access: httpx with ``http2=True``
        sets ALPN h2 on the context it is given, and a shared one would then make later
        HTTP/1.1 and WebSocket clients of the session negotiate HTTP/2."""
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, server_cert: trustme.LeafCert) -> CertFiles:
    """The server certificate chain, key and CA written to a temporary folder."""
    folder = tmp_path_factory.mktemp("certs")
    cert = folder / "cert.pem"
    key = folder / "key.pem"
    ca_file = folder / "ca.pem"
    server_cert.private_key_pem.write_to_path(str(key))
    with cert.open("wb") as handle:
        for blob in server_cert.cert_chain_pems:
            handle.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return CertFiles(cert=cert, key=key, ca=ca_file)


# Hypothesis budgets (tests/test_fuzz_*.py). "ci", the default, keeps each property test to
# a few seconds: a fixed number of examples, derandomized so CI sees the same inputs on
# every run (a red CI is then a real regression, never a lucky draw), no example database
# written, and no per-example deadline because the shared CI machine's timing varies.
# "long" (HYPOTHESIS_PROFILE=long) explores with fresh random inputs for a local hunt;
# what it finds goes in as an @example. The long-running fuzzers are in fuzz/.
hypothesis_settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None, database=None, print_blob=True
)
hypothesis_settings.register_profile("long", max_examples=5000, derandomize=False, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
