"""``--workers 2`` inside the Windows CPython (under Wine), not under pytest.

``tests/windows/test_windows_workers.py`` runs ``python.sh DIR tests/windows/workers_check.py
PORT [stop|orphan]``. This script runs the supervisor (``gateway.workers.run_workers``) in its
main thread with two spawned workers on 127.0.0.1:PORT; a helper thread waits until both
workers are ready, sends requests over new connections and prints the worker pids that
answered. Then, with ``stop`` (the default), it raises SIGTERM in this process (Wine cannot
deliver Ctrl+C) so that the supervisor's ``signal.signal`` fallback stops both workers over
their pipes; the last line is ``workers check passed`` and the exit status the supervisor's.
With ``orphan`` the supervisor vanishes at once (``os._exit(3)``, no clean-up), and the
workers must notice their closed pipes and exit by themselves. Standard library and
gateway/ only: the Windows Python has no pytest.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

# The checkout this script belongs to comes first, and spawn hands sys.path to the workers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import Config
from gateway.workers import AppSpec, run_workers

READY_TIMEOUT = 90.0


def get_pid(port: int) -> int:
    """One request on a new connection; the pid of the worker that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/?block=0.2")
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"FAILED: status {response.status}")
        return int(json.loads(response.read())["pid"])
    finally:
        connection.close()


def client(port: int, ready: threading.Event, result: list[int], orphan: bool) -> None:
    """Thread: wait for both workers, send concurrent requests, then stop (or drop) the supervisor."""
    try:
        if not ready.wait(READY_TIMEOUT):
            print("FAILED: the workers did not get ready", flush=True)
            return
        # Which worker's accept thread wins a connection is up to the OS: six at once can all
        # land on one worker, so send rounds of six until both have answered (five at most).
        sent = 0
        for _ in range(5):
            threads = [threading.Thread(target=lambda: result.append(get_pid(port))) for _ in range(6)]
            sent += len(threads)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            if len(set(result)) >= 2:
                break
        print(f"answered by worker pids {sorted(set(result))} ({len(result)} requests, {sent} sent)", flush=True)
    finally:
        if orphan:
            print("supervisor exits abruptly", flush=True)
            os._exit(3)
        signal.raise_signal(signal.SIGTERM)


class ServingLine(logging.Handler):
    """Sets ``ready`` when the supervisor logs its start-up line (every worker is ready)."""

    def __init__(self, ready: threading.Event) -> None:
        super().__init__()
        self.ready = ready

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("asgigw serving"):
            self.ready.set()


def main(argv: list[str]) -> int:
    """Serve tests.apps.pid:app with two workers on ``argv[0]``; stop them; report."""
    port = int(argv[0])
    orphan = argv[1:] == ["orphan"]
    ready = threading.Event()
    result: list[int] = []
    config = Config(port=port, workers=2, access_log=False, graceful_timeout=10.0)
    started = time.monotonic()
    thread = threading.Thread(target=client, args=(port, ready, result, orphan), daemon=True)
    thread.start()
    # On gateway.error, not the "gateway" logger whose handlers run_workers replaces.
    logging.getLogger("gateway.error").addHandler(ServingLine(ready))
    code = run_workers(AppSpec("tests.apps.pid:app"), config)
    print(f"supervisor exited with {code} after {time.monotonic() - started:.1f}s", flush=True)
    if code == 0 and len(result) == 6:
        print("workers check passed", flush=True)
    return code


if __name__ == "__main__":  # spawn runs this file again in each worker, as __mp_main__
    sys.exit(main(sys.argv[1:]))
