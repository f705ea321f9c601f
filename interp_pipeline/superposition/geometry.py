"""What the toy models of superposition represent, and how: the measures the paper reads off its figures.

A feature counts as represented when its direction W_i in the hidden space has norm
>= ``represented_norm`` (trained models put it near 1 or near 0: the paper's bar plots of
||W_i||). In two hidden dimensions the represented directions are read as angles:
orthogonal when dense, a regular polygon (all gaps 360/k degrees) when sparse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker


@dataclass(frozen=True)
class LevelGeometry:
    feature_probability: float
    norms: list[float]
    represented: list[int]  # feature indices, most important first
    gaps_deg: list[float]  # angles between neighbouring represented directions, around the circle

    @property
    def sparsity(self) -> float:
        return 1.0 - self.feature_probability

    def as_dict(self) -> dict[str, Any]:
        return {"feature_probability": self.feature_probability, "sparsity": self.sparsity, "norms": self.norms,
                "represented": self.represented, "gaps_deg": self.gaps_deg}


def angular_gaps(directions: torch.Tensor) -> list[float]:
    """Sorted by angle, the angle from each direction (rows of ``[k, 2]``) to the next, wrapping around."""
    if len(directions) < 2:
        return []
    angles = sorted(math.degrees(math.atan2(float(y), float(x))) for x, y in directions.tolist())
    return [(angles[(i + 1) % len(angles)] - angles[i]) % 360.0 for i in range(len(angles))]


def level_geometry(W: torch.Tensor, feature_probability: float, represented_norm: float) -> LevelGeometry:
    """One model's ``W`` (``[n_features, 2]``)."""
    norms = W.norm(dim=-1)
    represented = [i for i in range(len(norms)) if norms[i] >= represented_norm]
    return LevelGeometry(float(feature_probability), [round(float(n), 4) for n in norms], represented,
                         angular_gaps(W[represented]))


def summarise(levels: list[LevelGeometry], n_hidden: int) -> dict[str, float]:
    """The paper's two claims as numbers: the densest model keeps only the ``n_hidden`` most important
    features, orthogonal; the sparsest keeps all of them as a regular polygon."""
    dense, sparse = levels[0], levels[-1]
    n_features = len(dense.norms)
    # Two orthogonal directions make gaps of 90 and 270 degrees: the smaller one is their angle.
    dense_angle = min(dense.gaps_deg) if dense.gaps_deg else float("nan")
    polygon = 360.0 / len(sparse.represented) if sparse.represented else float("nan")
    return {
        "dense_sparsity": dense.sparsity,
        "dense_represented": float(len(dense.represented)),
        "dense_most_important_kept": float(dense.represented == list(range(min(n_hidden, n_features)))),
        "dense_angle_deg": dense_angle,
        "sparse_sparsity": sparse.sparsity,
        "sparse_represented": float(len(sparse.represented)),
        "sparse_gap_min_deg": min(sparse.gaps_deg) if sparse.gaps_deg else float("nan"),
        "sparse_gap_max_deg": max(sparse.gaps_deg) if sparse.gaps_deg else float("nan"),
        "sparse_polygon_deg": polygon,
        "sparse_norm_min": min(sparse.norms[i] for i in sparse.represented) if sparse.represented else float("nan"),
    }


def directions_figure(W: torch.Tensor, levels: list[LevelGeometry], importance: torch.Tensor) -> Any:
    """The paper's introduction figure: each model's feature directions W_i in the hidden plane,
    one panel per sparsity, coloured by importance (viridis, as the paper's notebook)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spread = float(importance.max() - importance.min()) or 1.0
    colours = plt.cm.viridis(((importance - importance.min()) / spread).tolist())  # least important: purple
    figure, axes = plt.subplots(1, len(levels), figsize=(2.0 * len(levels), 2.4), squeeze=False)
    limit = max(1.2, float(W.norm(dim=-1).max()) * 1.1)
    for ax, weights, level in zip(axes[0], W, levels):
        for i, (x, y) in enumerate(weights.tolist()):
            ax.plot([0, x], [0, y], color=colours[i], linewidth=1.5)
            ax.scatter([x], [y], color=colours[i], s=12, zorder=3)
        ax.set_aspect("equal")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("bottom", "left"):
            ax.spines[side].set_position("center")
        ax.set_title(f"S = {level.sparsity:.2f}\n{len(level.represented)} represented", fontsize=8)
    figure.suptitle("Feature directions W_i in the 2-d hidden space (colour: importance, yellow = most)",
                    fontsize=9)
    figure.tight_layout()
    return figure


def measure_geometry(models: Mapping[str, Any], represented_norm: float,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """The tms_geometry stage's work: each level's represented features and angles, the summary
    metrics, the represented count per level (step = level) and the paper's figure."""
    W = models["W"]
    if W.shape[-1] != 2:
        raise ConfigError("models", f"expected models with n_hidden 2 (angles are read in a plane), found {W.shape[-1]}")
    levels = [level_geometry(W[i], float(p), represented_norm) for i, p in enumerate(models["feature_probability"])]
    summary = summarise(levels, n_hidden=2)
    tracker.log_metrics(summary)
    for step, level in enumerate(levels):
        tracker.log_metrics({"represented_features": float(len(level.represented))}, step=step)
    tracker.log_figure(directions_figure(W, levels, models["importance"]), "feature_directions")
    return {"summary": summary, "levels": [level.as_dict() for level in levels]}
