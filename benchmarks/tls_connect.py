"""Cost of a new TLS connection: asgigw from two (or more) source trees, side by side.

``python -m benchmarks.tls_connect --tree . --tree ../main`` starts ``python -m gateway``
from each tree in turn (rounds interleaved), opens ``--connections`` new TLS connections one
after another (handshake, one HTTP/1.1 request, close) and reports, per tree, the median
over the rounds of the wall time and of the server process's CPU time per connection, and
their ratio to the first tree. Made for changes to connection set-up, such as the pre-TLS
step (PROXY protocol, plain-HTTP detection) in gateway/pre_tls.py. Linux only (reads
/proc for the server's CPU time).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

URL = re.compile(r"https://127\.0\.0\.1:(\d+)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_connection(context: ssl.SSLContext, port: int) -> None:
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost"
    ) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass


def measure(tree: str, cert: Path, key: Path, context: ssl.SSLContext, connections: int) -> tuple[float, float]:
    """(wall ms, server CPU ms) per connection for the asgigw in ``tree``."""
    command = [sys.executable, "-m", "gateway", "--port", "0", "--cert", str(cert), "--key", str(key)]
    command += ["--no-access-log", "--lifespan", "off", "benchmarks.app:app"]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    server = subprocess.Popen(command, cwd=tree, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        port = 0
        for line in server.stderr:
            match = URL.search(line)
            if match:
                port = int(match.group(1))
                break
        if not port:
            raise RuntimeError(f"{tree}: the server did not start")
        for _ in range(20):  # warm-up
            one_connection(context, port)
        cpu_before, started = cpu_seconds(server.pid), time.perf_counter()
        for _ in range(connections):
            one_connection(context, port)
        wall, cpu = time.perf_counter() - started, cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(10)
    return wall * 1000 / connections, cpu * 1000 / connections


def main() -> None:
    """Parse the options, run the interleaved rounds, print one line per tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="source tree with gateway/; repeat")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    folder = Path(tempfile.mkdtemp())
    cert, key = folder / "cert.pem", folder / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in options.tree}
    for _ in range(options.rounds):
        for tree in options.tree:
            results[tree].append(measure(tree, cert, key, context, options.connections))
    first_wall = first_cpu = 0.0
    for tree, rounds in results.items():
        wall = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        first_wall, first_cpu = first_wall or wall, first_cpu or cpu
        print(
            f"{tree}: {wall:.2f} ms wall ({wall / first_wall:.2f}x), {cpu:.2f} ms server CPU ({cpu / first_cpu:.2f}x)"
        )


if __name__ == "__main__":
    main()
