"""Plain HTTP never imports ``cryptography`` (about 15 MB of memory per process, and start-up
time): only the TLS path loads gateway.tls, gateway.cert_reload and gateway.devcerts."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests.apps.process import ROOT, gateway_process

# Everything a plain-HTTP server touches before it serves, in one process.
NO_TLS_PATH = """
import asyncio, sys
import gateway, gateway.cli, gateway.server, gateway.workers, gateway.worker_process
from gateway.config import Config
from gateway.server import Server, prepare_tls

async def app(scope, receive, send):
    pass

config = Config(port=0, lifespan="off")
assert prepare_tls(config) == (config, None, None)

async def main():
    server = Server(app, config)
    serving = asyncio.ensure_future(server.serve(handle_signals=False))
    await server.started.wait()
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    writer.write(b"GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
    await reader.read()
    writer.close()
    server.request_shutdown()
    assert await serving == 0

asyncio.run(main())
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "cryptography" or name in (
    "gateway.tls", "gateway.cert_reload", "gateway.devcerts", "gateway.trust_store", "gateway.certs_cli"))
assert not loaded, loaded
print("ok")
"""


def test_no_tls_server_path_imports_no_cryptography() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_TLS_PATH], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_no_tls_cli_imports_no_cryptography_in_one_process_or_in_workers() -> None:
    with gateway_process("--port", "0", "tests.apps.modules:app") as server:
        single = httpx.get(server.url).json()
    with gateway_process("--port", "0", "--workers", "2", "tests.apps.modules:app") as server:
        worker = httpx.get(server.url).json()
    assert single["cryptography"] is False
    assert single["multiprocessing"] is False  # gateway.platform's promise, checked alongside
    assert worker["cryptography"] is False
    assert worker["pid"] != server.process.pid


def test_tls_path_still_loads_cryptography(isolated_dev_ca: Path) -> None:
    # The control for the tests above: the same report over HTTPS (dev certificate) says True.
    with gateway_process("--port", "0", "tests.apps.modules:app", plain=False) as server:
        assert server.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(isolated_dev_ca / "ca.pem"))
        report = httpx.get(server.url, verify=trusted).json()
    assert report["cryptography"] is True
