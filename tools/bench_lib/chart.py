"""Draw a results JSON of ``tools/bench`` as one PNG: a bar chart per compared figure.

Run with an interpreter that has matplotlib (bench-env/py does):
``python -m bench_lib.chart RESULTS.json OUT.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_lib import report


def draw(doc: dict[str, object], png: Path) -> None:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    results = doc["results"]
    assert isinstance(results, dict)
    sizes = doc["meta"]["sizes"] if isinstance(doc["meta"], dict) else {}
    backlogs = tuple(sizes.get("backlogs", ())) if "backlog" in json.dumps(results) else ()
    shown = [
        m
        for m in report.all_metrics(backlogs)
        if any(report.lookup(r, m.path) is not None for r in results.values())
    ]
    cols = 3
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        names = [n for n in results if report.lookup(results[n], metric.path) is not None]
        values = [report.lookup(results[n], metric.path) or 0.0 for n in names]
        colors = ["#d62728" if n == report.OURS else "#7f7f7f" for n in names]
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        better = "higher is better" if metric.higher_is_better else "lower is better"
        ax.set_title(f"{metric.path}\n({better})", fontsize=9)
        ax.tick_params(labelsize=8)
        if not metric.higher_is_better and max(values, default=0) > 50 * (
            min(values, default=1) or 1
        ):
            ax.set_xscale("log")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    meta = doc["meta"] if isinstance(doc["meta"], dict) else {}
    fig.suptitle(f"tools/bench {meta.get('mode', '')} run {meta.get('started', '')}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(png, dpi=90)


def main(argv: list[str]) -> int:
    json_path, png = argv
    draw(json.loads(Path(json_path).read_text()), Path(png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
