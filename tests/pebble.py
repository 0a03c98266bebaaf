"""A real ACME server for the tests: Debian's Pebble, with pebble-challtestsrv as its DNS.

Everything listens on 127.0.0.1 on free ports. Pebble's own HTTPS certificate comes from a
trustme CA (``Pebble.client_ca``); the certificates it issues chain to its own root, which
:meth:`Pebble.issuing_root` fetches from its management port. challtestsrv answers every
DNS name with 127.0.0.1, and Pebble's validation ports (``http_port`` for http-01,
``tls_port`` for tls-alpn-01) are the test's asgigw listeners.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme

from tests.apps.process import OutputLines, free_port, wait_for_port

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
MISSING = None if PEBBLE and CHALLTESTSRV else "Debian's pebble package is not installed (.ci/run installs it)"


@dataclass
class Pebble:
    """A running Pebble: its directory URL and the files a client needs to trust it."""

    directory: str
    ca_bundle: Path
    management: str
    client_ca: trustme.CA
    output: OutputLines

    def issuing_root(self) -> str:
        """PEM of the root Pebble signs certificates with (fresh at every Pebble start)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        return httpx.get(f"{self.management}/roots/0", verify=context, timeout=10).text

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only Pebble's issuing root."""
        context = ssl.create_default_context(cadata=self.issuing_root())
        return context


@contextmanager
def running_pebble(
    folder: Path, *, http_port: int, tls_port: int, nonce_reject: int = 0, validity: int | None = None
) -> Iterator[Pebble]:
    """Start challtestsrv and Pebble; stop both afterwards (bounded waits)."""
    assert PEBBLE and CHALLTESTSRV, MISSING
    folder.mkdir(parents=True, exist_ok=True)
    client_ca = trustme.CA()
    server_cert = client_ca.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_pem.write_to_path(str(folder / "pebble.key"))
    server_cert.cert_chain_pems[0].write_to_path(str(folder / "pebble.pem"))
    client_ca.cert_pem.write_to_path(str(folder / "pebble-ca.pem"))
    listen, management, dns, dns_management = free_port(), free_port(), free_port(), free_port()
    settings: dict[str, object] = {
        "listenAddress": f"127.0.0.1:{listen}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(folder / "pebble.pem"),
        "privateKey": str(folder / "pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    if validity is not None:
        settings["certificateValidityPeriod"] = validity
    (folder / "pebble.json").write_text(json.dumps({"pebble": settings}))
    environ = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject)}
    dns_server = subprocess.Popen(
        [
            CHALLTESTSRV,
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
            "-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{dns_management}",
            "-http01", "", "-https01", "", "-tlsalpn01", "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    pebble = subprocess.Popen(
        [PEBBLE, "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert pebble.stdout is not None
    output = OutputLines(pebble.stdout, "pebble")
    try:
        wait_for_port(listen, timeout=20)
        wait_for_port(management, timeout=20)
        yield Pebble(
            f"https://127.0.0.1:{listen}/dir",
            folder / "pebble-ca.pem",
            f"https://127.0.0.1:{management}",
            client_ca,
            output,
        )
    finally:
        for process in (pebble, dns_server):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        output.join()
        pebble.stdout.close()
