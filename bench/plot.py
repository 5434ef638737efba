"""The PNG of bench/compare.py's results: every bench/results/compare-<pipeline>-<size>.json present,
one column per pipeline, wall time of the full run (top) and peak RSS of the process tree (bottom)
against the input size, one line per system, bars from the fastest to the slowest repetition.
Several sizes on one plot are the scaling figure (make bench SIZE=0.25GB,1GB,4GB).

    python bench/plot.py [RESULTS_DIR]        writes RESULTS_DIR/compare.png (default bench/results)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

STYLE = {"assay-sail": ("Assay, embedded", "tab:blue", "o"), "assay-spark": ("Assay on Spark", "tab:green", "s"),
         "baseline": ("Spark baseline (seeds' code)", "tab:red", "^"),
         "floor-sail": ("floor, embedded", "tab:blue", "x"), "floor-spark": ("floor, Spark", "tab:green", "x")}


def load(results: Path) -> dict[str, list[dict]]:
    by_pipeline: dict[str, list[dict]] = {}
    for path in sorted(results.glob("compare-*.json")):
        try:
            result = json.loads(path.read_text())
        except ValueError:
            continue
        if "summary" in result and "input" in result:
            by_pipeline.setdefault(result["pipeline"], []).append(result)
    for items in by_pipeline.values():
        items.sort(key=lambda r: r["input"]["bytes"])
    return by_pipeline


def draw(results: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    data = load(Path(results))
    if not data:
        return []
    pipelines = sorted(data)
    fig, axes = plt.subplots(2, len(pipelines), figsize=(6.5 * len(pipelines), 8.5), squeeze=False)
    for col, pipeline in enumerate(pipelines):
        items = data[pipeline]
        for system, (label, color, marker) in STYLE.items():
            points = [(r["input"]["bytes"] / 1e9, r["summary"][system]["full"]) for r in items
                      if r["summary"].get(system, {}).get("full")]
            if not points:
                continue
            xs = [x for x, _ in points]
            dashed = "--" if system.startswith("floor") else "-"
            for row, (key, lo, hi, scale) in enumerate((("seconds", "seconds_min", "seconds_max", 1),
                                                          ("peak_rss_mb", "rss_min", "rss_max", 1024))):
                ys = [p[key] / scale for _, p in points]
                err = [[(p[key] - p[lo]) / scale for _, p in points], [(p[hi] - p[key]) / scale for _, p in points]]
                axes[row][col].errorbar(xs, ys, yerr=err, label=label, color=color, marker=marker, linestyle=dashed,
                                        capsize=3)
        sizes = ", ".join(f"{r['size']} ({r['reps']} rep{'s' if r['reps'] > 1 else ''})" for r in items)
        axes[0][col].set_title(f"{pipeline}: full run, median of repetitions\n{sizes}", fontsize=10)
        axes[0][col].set_ylabel("wall time (s)")
        axes[1][col].set_ylabel("peak RSS of the process tree (GB)")
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_xlabel("input (GB of landed event files)")
            if len({r["input"]["bytes"] for r in items}) > 1:
                ax.set_xscale("log")
                if row == 0:            # times span decades; memory is read better on a linear axis
                    ax.set_yscale("log")
                # Ticks at the measured sizes, in plain numbers (log axes print 3×10⁻¹ and overlap).
                ax.set_xticks([r["input"]["bytes"] / 1e9 for r in items], [r["size"] for r in items])
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
        axes[0][col].legend(fontsize=8)
    machine = next(iter(data.values()))[0].get("machine", {})
    fig.suptitle(f"Assay vs the seeds' Spark pipeline — {machine.get('cpus', '?')} CPUs, "
                 f"{machine.get('memory_mb', 0) / 1024:.0f} GB RAM, Spark heap {machine.get('spark_heap', '?')}",
                 fontsize=11)
    fig.tight_layout()
    out = Path(results) / "compare.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


if __name__ == "__main__":
    for written in draw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"):
        print(written)
