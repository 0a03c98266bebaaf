"""Replay every input the long-running fuzzers (fuzz/) saved as a crash, and the hand-made ones.

Each file in tests/fuzz_regressions/<target>/ is one fuzz input (see
tests.fuzz_harness.chunks_from_fuzz_input); it must now pass its target's checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz_targets import TARGETS

FOLDER = Path(__file__).parent / "fuzz_regressions"
CASES = sorted(path for path in FOLDER.glob("*/*") if path.is_file() and path.parent.name in TARGETS)


def test_every_target_has_regression_inputs() -> None:
    # An empty folder would make the replay below pass without running anything.
    assert {path.parent.name for path in CASES} == set(TARGETS)


@pytest.mark.parametrize("path", CASES, ids=[f"{path.parent.name}/{path.name}" for path in CASES])
def test_regression_input_passes(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())
