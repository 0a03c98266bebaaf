"""``python -m tests.apps.windows_choices PORT APP [CERT KEY]``: workers with the Windows choices.

Runs ``gateway.workers.run_workers`` with ``windows=True`` on Linux: the supervisor's stop
signals go through the ``signal.signal`` fallback the Proactor loop needs, there is no SIGHUP
handler, the workers (spawned, as everywhere) accept on the shared sockets from a thread
(``platform.SharedSocketAcceptor``) and are stopped over their control pipe.
"""

from __future__ import annotations

import sys

from gateway.config import Config
from gateway.workers import AppSpec, run_workers


def main(argv: list[str]) -> int:
    """Serve ``argv[1]`` on 127.0.0.1:``argv[0]`` with two workers, as on Windows."""
    port, target = int(argv[0]), argv[1]
    certfile, keyfile = (argv[2], argv[3]) if len(argv) > 3 else (None, None)
    config = Config(port=port, workers=2, graceful_timeout=10.0, certfile=certfile, keyfile=keyfile)
    return run_workers(AppSpec(target), config, windows=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
