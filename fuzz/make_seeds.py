"""Write fuzz/seeds/<target>/ from the property tests' generators of valid input.

    python fuzz/make_seeds.py

Each seed is a fuzz input as tests.fuzz_harness.chunks_from_fuzz_input reads it: a first
byte with no cuts and no EOF, then valid bytes (requests, frames), so the fuzzer starts
from deep inside each protocol instead of from the first bytes of a request line.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests import test_fuzz_http1, test_fuzz_http2, test_fuzz_websocket  # noqa: E402

COUNT = 40


def write(target: str, data: bytes) -> None:
    folder = ROOT / "fuzz" / "seeds" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main() -> None:
    common = settings(max_examples=COUNT, database=None, derandomize=True, suppress_health_check=list(HealthCheck))

    @common
    @given(test_fuzz_http1.PIPELINES)
    def http1(data: bytes) -> None:
        write("http1", b"\x00" + data)

    @common
    @given(test_fuzz_http2.FRAME_LISTS)
    def http2(frames: list) -> None:  # type: ignore[type-arg]
        write("http2", b"\x00" + b"".join(frame.serialize() for frame in frames))

    @common
    @given(test_fuzz_websocket.sessions(), st.just(None))
    def websocket(session: tuple[bool, bytes], _: None) -> None:
        deflate, frames = session
        write("websocket", (b"\x10" if deflate else b"\x00") + frames)

    http1()
    http2()
    websocket()


if __name__ == "__main__":
    main()
