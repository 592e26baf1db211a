"""The comparison chart of the evaluation: one group of bars per metric, one bar per model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

METRICS = ("recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@10")


def comparison_chart(
    models: Mapping[str, Mapping[str, float]], title: str, path: Path | str
) -> Path:
    """Write a grouped bar chart (PNG) of ``models[name][metric]`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for n, name in enumerate(names):
        xs = [m + (n - (len(names) - 1) / 2) * width for m in range(len(METRICS))]
        values = [float(models[name].get(metric, 0.0)) for metric in METRICS]
        bars = ax.bar(xs, values, width=width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(range(len(METRICS)), METRICS)
    ax.set_ylabel("score (full ranking, conservative ties)")
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
