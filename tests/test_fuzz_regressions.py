"""Replay every input the long-running fuzzers (fuzz/) saved as a crash, and the hand-made ones.

Each file in tests/fuzz_regressions/<target>/ is one fuzz input (see
tests.fuzz_harness.chunks_from_fuzz_input); it must now pass its target's checks.
tests/fuzz_regressions/pending-http2-goaway/ holds HTTP/2 inputs that still fail on this
branch (a GOAWAY in the same read as a stream the adapter resets): the GOAWAY scanner of
the HTTP/2 work fixes them; once it is merged, move them to http2/ and drop that test.
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


PENDING = sorted((FOLDER / "pending-http2-goaway").glob("crash-*"))


@pytest.mark.xfail(
    strict=True, reason="a GOAWAY read with a stream reset: fixed by the HTTP/2 GOAWAY scanner (issue 12)"
)
@pytest.mark.parametrize("path", PENDING, ids=[path.name for path in PENDING])
def test_pending_http2_input_passes(path: Path) -> None:
    TARGETS["http2"](path.read_bytes())
