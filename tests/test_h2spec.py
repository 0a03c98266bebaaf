"""h2spec 2.6.0, the HTTP/2 conformance suite, against asgigw over TLS and over h2c.

CI builds h2spec offline (``../shared/tools/h2spec/build.sh``) and exports its path as
``H2SPEC``; without it these tests skip and say why. Every case must pass, except those
listed in :data:`EXPECTED_FAILURES`, each justified in docs/http2.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.apps.basic import app
from tests.conftest import CertFiles, RunningServer, running_server

DEFAULT_BUILD = Path("/tmp/h2spec-build/h2spec")  # where build.sh puts it by default

# docs/http2.md, "h2spec": a plain port serves HTTP/1.1 and h2c, so a connection whose first
# bytes are not the HTTP/2 preface is HTTP/1.1 (RFC 9112) and gets a 400, not a GOAWAY.
EXPECTED_FAILURES = {"h2c": {("http2/3.5", "Sends invalid connection preface")}, "tls": set()}


def h2spec_binary() -> str:
    candidates = [os.environ.get("H2SPEC", ""), str(DEFAULT_BUILD), shutil.which("h2spec") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(
        "h2spec is not built: run `bash ../shared/tools/h2spec/build.sh` (needs Debian golang-go) "
        "and export H2SPEC with the path it prints"
    )


def run_h2spec(server: RunningServer, tmp_path: Path, *args: str) -> tuple[int, set[tuple[str, str]]]:
    """Run h2spec against ``server``; the number of cases and the (section, case) that failed."""
    report = tmp_path / "h2spec.xml"
    command = [h2spec_binary(), "-h", "127.0.0.1", "-p", str(server.port), "-o", "5", "-j", str(report), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert report.exists(), done.stdout + done.stderr
    # A failure message may quote raw bytes the server sent, which XML 1.0 cannot hold;
    # h2spec writes them as they are, so they are dropped before parsing.
    text = re.sub(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", b"", report.read_bytes())
    try:
        cases = ElementTree.fromstring(text).iter("testcase")
    except ElementTree.ParseError as exc:
        raise AssertionError(f"h2spec's report is not XML ({exc}):\n{done.stdout}{done.stderr}") from None
    total = 0
    failed = set()
    for case in cases:
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add((case.get("package", ""), case.get("classname", "")))
    assert not (failed and done.returncode == 0)  # h2spec says the same as its report
    return total, failed


@pytest.mark.parametrize(("strict", "cases"), [(False, 146), (True, 147)], ids=["default", "strict"])
def test_h2spec_over_tls(strict: bool, cases: int, cert_files: CertFiles, tmp_path: Path) -> None:
    options = {"certfile": str(cert_files.cert), "keyfile": str(cert_files.key)}
    with running_server(app, **options) as server:
        total, failed = run_h2spec(server, tmp_path, "-t", "-k", *(["-S"] if strict else []))
    assert total == cases
    assert failed == EXPECTED_FAILURES["tls"]


def test_h2spec_over_h2c(tmp_path: Path) -> None:
    with running_server(app) as server:
        total, failed = run_h2spec(server, tmp_path, "-S")
    assert total == 147
    assert failed == EXPECTED_FAILURES["h2c"]
