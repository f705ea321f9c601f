"""The accuracy-by-layer figure of a set of probes."""

from __future__ import annotations

from typing import Any


def accuracy_by_layer_figure(hooks: list[str], metrics: dict[str, list[float]], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(hooks) + 2), 3.8))
    x = list(range(len(hooks)))
    for name, style in (("train_acc", "--o"), ("heldout_acc", "-o"), ("control_heldout_acc", ":s"),
                        ("majority_acc", ":")):
        ax.plot(x, metrics[name], style, label=name.replace("_", " "))
    ax.set_xticks(x, hooks, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
