"""The editing-at-scale figure: each metric against the number of edits, one line per method (MEMIT's Figure 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def scaling_figure(results: Mapping[str, Mapping[int, Mapping[str, float]]], sizes: Sequence[int],
                   metrics: Sequence[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), sharey=True)
    styles = {"memit": ("-o", "MEMIT"), "rome": ("--s", "ROME, sequential")}
    for ax, metric in zip(axes, metrics):
        for method, by_size in results.items():
            style, label = styles.get(method, ("-", method))
            ax.plot(sizes, [by_size[n][metric] for n in sizes], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(sizes), [str(n) for n in sizes])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("edits")
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 fraction")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
