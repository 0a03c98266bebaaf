"""PNG plots of benchmark results: one figure per scenario, throughput and CPU per server.

``python -m benchmarks.plots RESULT.json... --out docs/img`` reads files written by
``benchmarks.run --json`` (plain, TLS) and ``benchmarks.websocket --json`` and draws, per
scenario, the median throughput with each round's figure as a dot, and the median server CPU
time per request or message. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# (JSON key of the figure, axis label) for each kind of result.
HTTP_FIGURES = (("requests_per_second", "requests/s"), ("cpu_us_per_request", "server CPU µs per request"))
WEBSOCKET_FIGURES = {
    "echo": (("echo_messages_per_second", "messages/s"), ("echo_cpu_us_per_message", "server CPU µs per message")),
    "large": (("large_messages_per_second", "messages/s"), ("large_cpu_us_per_message", "server CPU µs per message")),
}


def scenarios(path: Path) -> list[tuple[str, dict[str, list[dict[str, float]]], tuple[tuple[str, str], ...]]]:
    """(title, runs per server, figures) for every scenario a result file holds."""
    report: dict[str, Any] = json.loads(path.read_text())
    found = []
    for scenario in ("plain", "tls"):
        if scenario in report:
            found.append((f"{path.stem}: {scenario}", report[scenario]["runs"], HTTP_FIGURES))
    if "medians" in report:  # benchmarks.websocket
        runs = report["runs"]
        first = next(iter(runs.values()))[0]
        for name, figures in WEBSOCKET_FIGURES.items():
            if figures[0][0] in first:
                found.append((f"{path.stem}: WebSocket {name}", runs, figures))
    return found


def plot(title: str, runs: dict[str, list[dict[str, float]]], figures: tuple[tuple[str, str], ...], out: Path) -> Path:
    """Draw one scenario's figure; return the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 3.5))
    for axis, (key, label) in zip(axes, figures, strict=True):
        values = [[run[key] for run in runs[name] if run.get(key)] for name in names]
        medians = [statistics.median(v) if v else 0.0 for v in values]
        bars = axis.bar(names, medians, color=["#3b7dd8" if n.startswith("asgigw") else "#999999" for n in names])
        for index, points in enumerate(values):
            axis.scatter([index] * len(points), points, color="black", s=8, zorder=3)
        axis.bar_label(bars, fmt="%.0f", fontsize=7)
        axis.set_ylabel(label)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(title + " (median of rounds; dots: each round)", fontsize=9)
    fig.tight_layout()
    target = out / (title.replace(": ", "-").replace(" ", "-").lower() + ".png")
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def main(argv: list[str] | None = None) -> int:
    """Plot every scenario of the given result files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.results:
        for title, runs, figures in scenarios(path):
            print(plot(title, runs, figures, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
