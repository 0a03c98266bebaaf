"""``python -m tests.apps.windows_choices PORT APP``: a supervisor with the Windows choices forced.

Runs ``gateway.workers.run_workers`` with ``windows=True`` on Linux: the supervisor's stop
signals go through the ``signal.signal`` fallback the Proactor loop needs, there is no SIGHUP
handler, and the workers (spawned, as everywhere) are stopped over their control pipe.
"""

from __future__ import annotations

import sys

from gateway.config import Config
from gateway.workers import AppSpec, run_workers


def main(argv: list[str]) -> int:
    """Serve ``argv[1]`` on 127.0.0.1:``argv[0]`` with two workers, as on Windows."""
    port, target = int(argv[0]), argv[1]
    config = Config(port=port, workers=2, graceful_timeout=10.0)
    return run_workers(AppSpec(target), config, windows=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
