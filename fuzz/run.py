"""Long-running coverage-guided fuzzer of one protocol adapter (see fuzz/README.md).

    python fuzz/run.py http1 --seconds 1800

Runs atheris (libFuzzer for Python) on ``tests.fuzz_targets.TARGETS[target]`` for the given
time, restarting after each crash so one bug does not end the run. Crashing inputs land in
tests/fuzz_regressions/<target>/ (replayed by tests/test_fuzz_regressions.py), the corpus in
fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/, written by
fuzz/make_seeds.py on the first run). At the end it replays the corpus
under coverage.py and prints one summary line: duration, executions, executions per second,
libFuzzer's edge coverage, line coverage of the adapter's modules, crashes.

Without atheris (it builds only where libFuzzer does), ``--engine hypothesis`` runs the
property tests' generators with a large budget for the same time instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
# The modules each target exercises, for the line-coverage figure.
COVERED = {
    "http1": ["gateway/protocols/http1*.py", "gateway/protocols/request_head.py", "gateway/streams/http.py"],
    "http2": ["gateway/protocols/http2*.py", "gateway/streams/http.py"],
    "websocket": ["gateway/streams/websocket*.py"],
}


def child(target: str, arguments: list[str]) -> None:
    """Inside the atheris process: instrument the gateway and its protocol libraries, fuzz."""
    import atheris

    sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports(include=["gateway", "h11", "h2", "hpack", "hyperframe", "wsproto"]):
        from tests.fuzz_targets import TARGETS
    check = TARGETS[target]
    crashes = ROOT / "tests" / "fuzz_regressions" / target

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except BaseException:
            # Saved here as well as by libFuzzer, which does not always get to write it.
            (crashes / f"crash-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
            raise

    atheris.Setup([sys.argv[0], *arguments], one_input)
    atheris.Fuzz()


def replay(target: str, folders: list[Path]) -> None:
    """Run every input in ``folders`` once (under coverage.py when called for the figure)."""
    sys.path.insert(0, str(ROOT))
    from tests.fuzz_targets import TARGETS

    for folder in folders:
        for path in sorted(folder.glob("*")):
            if path.is_file() and not path.name.startswith("."):
                try:
                    TARGETS[target](path.read_bytes())
                except AssertionError:
                    pass  # a known crash: counted by the fuzzer, replayed by the test suite


def run_atheris(target: str, seconds: int) -> dict[str, float]:
    corpus = ROOT / "fuzz" / "corpus" / target
    seeds = ROOT / "fuzz" / "seeds" / target
    crashes = ROOT / "tests" / "fuzz_regressions" / target
    for folder in (corpus, crashes):
        folder.mkdir(parents=True, exist_ok=True)
    if not seeds.is_dir() or not any(seeds.iterdir()):
        subprocess.run([sys.executable, str(ROOT / "fuzz" / "make_seeds.py")], cwd=ROOT, check=True)
    deadline = time.monotonic() + seconds
    executions = 0
    crash_count = 0
    edges = 0
    started = time.monotonic()
    while (left := int(deadline - time.monotonic())) > 0:
        before = set(crashes.iterdir())
        command = [
            sys.executable,
            __file__,
            target,
            "--child",
            "--",
            str(corpus),
            str(seeds),
            f"-max_total_time={left}",
            f"-artifact_prefix={crashes}/",
            "-max_len=4096",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        log = result.stdout + result.stderr
        (ROOT / "fuzz" / f"last-{target}.log").write_text(log[-200_000:])
        found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        executions += int(found[-1]) if found else sum(int(n) for n in re.findall(r"Done (\d+) runs", log))
        covered = re.findall(r"\bcov: (\d+)", log)
        edges = max([edges, *(int(n) for n in covered)])
        # Only what this run wrote: libFuzzer's crash-, timeout- and oom- files (one_input
        # writes crash- ones too), not inputs added to the folder by hand meanwhile.
        new = {path for path in set(crashes.iterdir()) - before if path.name.startswith(ARTIFACTS)}
        crash_count += len(new)
        if result.returncode != 0 and not new:
            sys.exit(f"fuzz/run.py: atheris failed for {target} (exit {result.returncode}); see fuzz/last-{target}.log")
        if not new:
            break
    duration = time.monotonic() - started
    return {"seconds": duration, "executions": executions, "edges": edges, "crashes": crash_count}


def run_hypothesis(target: str, seconds: int) -> dict[str, float]:
    """The property tests of ``target`` with fresh random inputs until the time is up."""
    test_file = {"http1": "test_fuzz_http1", "http2": "test_fuzz_http2", "websocket": "test_fuzz_websocket"}[target]
    environment = {**os.environ, "HYPOTHESIS_PROFILE": "long"}
    started = time.monotonic()
    examples = failures = 0
    while time.monotonic() - started < seconds:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                *("--hypothesis-show-statistics", f"tests/{test_file}.py"),
            ],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        examples += sum(
            int(count) for count in re.findall(r"(\d+) (?:passing|failing|invalid) examples", result.stdout)
        )
        failures += result.returncode != 0
    return {"seconds": time.monotonic() - started, "executions": examples, "edges": 0, "crashes": failures}


def line_coverage(target: str) -> float:
    """Percent of the target's modules' lines run by replaying the corpus and regressions."""
    data_file = ROOT / "fuzz" / f".coverage-{target}"
    folders = [ROOT / "fuzz" / "corpus" / target, ROOT / "tests" / "fuzz_regressions" / target]
    include = ",".join(str(ROOT / pattern) for pattern in COVERED[target])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--data-file={data_file}",
            f"--include={include}",
            __file__,
            target,
            "--replay",
            *map(str, folders),
        ],
        cwd=ROOT,
        check=True,
    )
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data_file}", "-o", "-", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(report.stdout)["totals"]["percent_covered"])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[2] in ("--child", "--replay"):
        # Internal calls: fuzz/run.py TARGET --child -- LIBFUZZER-ARGS | --replay FOLDER...
        target, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
        if mode == "--child":
            child(target, rest[1:] if rest[:1] == ["--"] else rest)
        else:
            replay(target, [Path(folder) for folder in rest])
        return
    parser = argparse.ArgumentParser(description="Fuzz one asgigw protocol adapter for a given time.")
    parser.add_argument("target", choices=sorted(COVERED))
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--engine", choices=["atheris", "hypothesis"], default="atheris")
    options = parser.parse_args()
    if options.engine == "atheris":
        figures = run_atheris(options.target, options.seconds)
    else:
        figures = run_hypothesis(options.target, options.seconds)
    coverage = line_coverage(options.target) if options.engine == "atheris" else float("nan")
    rate = figures["executions"] / figures["seconds"] if figures["seconds"] else 0.0
    print(
        f"{options.target}: {figures['seconds']:.0f} s, {figures['executions']:.0f} executions, {rate:.0f}/s, "
        f"{figures['edges']:.0f} edges, line coverage {coverage:.1f}%, crashes {figures['crashes']:.0f}"
    )


if __name__ == "__main__":
    main()
