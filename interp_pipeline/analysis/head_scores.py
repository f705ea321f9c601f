"""Attention-head scores: previous-token, duplicate-token, induction (TransformerLens's head detector).

The scores are TransformerLens's head detector's (``transformer_lens.head_detector``):
its detection patterns, built from each sequence's own tokens, and its
``compute_head_attention_similarity_score`` with ``detect_head``'s defaults ("mul":
the fraction of a head's attention that falls on the pattern's query-key pairs).
``detect_head`` itself takes strings and one prompt at a time, so this runs the model
batch-wise and scores each sequence's patterns with the same helpers, then averages
over sequences (as ``detect_head`` does for a list of prompts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import HeadScoresConfig
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    import numpy as np
    from jaxtyping import Float, Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

# Score name -> the head detector's pattern function (a name in transformer_lens.head_detector).
SCORES: dict[str, str] = {
    "previous_token": "get_previous_token_head_detection_pattern",
    "duplicate_token": "get_duplicate_token_head_detection_pattern",
    "induction": "get_induction_head_detection_pattern",
}
# detect_head's defaults, so the numbers match what TransformerLens users see; the stage
# itself excludes BOS by default (see HeadScoresConfig.exclude_bos).
EXCLUDE_BOS = False
EXCLUDE_CURRENT_TOKEN = False
ERROR_MEASURE = "mul"
# Heatmaps get a number in each cell up to this many cells (12 x 12 for GPT-2 small);
# past it the numbers would be unreadable.
MAX_ANNOTATED_CELLS = 256


def detection_patterns(tokens: Int[Tensor, "pos"]) -> dict[str, Float[Tensor, "pos pos"]]:
    """The head detector's three detection patterns for one sequence (float32, on the CPU).

    Built from the sequence itself, so duplicates anywhere count (a random first half
    may repeat a token by chance; a probe may repeat more than twice).
    """
    from transformer_lens import head_detector

    # The detector's helpers expect [1, pos] on the CPU (they go through numpy).
    seq = tokens.detach().reshape(1, -1).cpu()
    return {name: getattr(head_detector, fn)(seq).float() for name, fn in SCORES.items()}


def layer_scores(
    patterns: Float[Tensor, "batch head q k"],
    detections: Sequence[Mapping[str, Tensor]],
    exclude_bos: bool = EXCLUDE_BOS,
) -> dict[str, Float[Tensor, "batch head"]]:
    """Each score for each sequence and head of one layer, by the head detector's similarity score."""
    import torch
    from transformer_lens.head_detector import compute_head_attention_similarity_score

    patterns = patterns.detach().float().cpu()
    n_batch, n_heads = patterns.shape[:2]
    if len(detections) != n_batch:
        raise ValueError(f"expected a detection pattern set per sequence ({n_batch}), found {len(detections)}")
    out = {name: torch.zeros(n_batch, n_heads, dtype=torch.float64) for name in SCORES}
    for i, detection in enumerate(detections):
        for name in SCORES:
            for head in range(n_heads):
                out[name][i, head] = compute_head_attention_similarity_score(
                    patterns[i, head],
                    detection_pattern=detection[name],
                    exclude_bos=exclude_bos,
                    exclude_current_token=EXCLUDE_CURRENT_TOKEN,
                    error_measure=ERROR_MEASURE,
                )
    return out


def score_patterns(
    patterns: Float[Tensor, "batch layer head q k"],
    tokens: Int[Tensor, "batch pos"],
    exclude_bos: bool = EXCLUDE_BOS,
) -> dict[str, np.ndarray]:
    """Each score per [layer, head], averaged over sequences, from attention patterns already computed."""
    if patterns.ndim == 4:  # one sequence: [layer head q k]
        patterns, tokens = patterns.unsqueeze(0), tokens.reshape(1, -1)
    detections = [detection_patterns(seq) for seq in tokens]
    per_layer = [layer_scores(patterns[:, layer], detections, exclude_bos) for layer in range(patterns.shape[1])]
    return {
        name: _stack([scores[name] for scores in per_layer]).mean(axis=0)
        for name in SCORES
    }


def _stack(layers: list[Tensor]) -> np.ndarray:
    """[batch head] per layer -> [batch layer head] as float64 numpy."""
    import numpy as np

    return np.stack([t.numpy() for t in layers], axis=1)


def top_heads(scores: Mapping[str, np.ndarray], top_k: int) -> list[dict[str, Any]]:
    """The top_k heads of each score, highest first (ties by layer, then head)."""
    rows = []
    for name, grid in scores.items():
        cells = [(float(grid[l, h]), l, h) for l in range(grid.shape[0]) for h in range(grid.shape[1])]
        cells.sort(key=lambda c: (-c[0], c[1], c[2]))
        rows += [{"score": name, "layer": l, "head": h, "value": v} for v, l, h in cells[:top_k]]
    return rows


def top_heads_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| score | rank | head | value |", "|---|---:|---|---:|"]
    rank: dict[str, int] = {}
    for row in rows:
        rank[row["score"]] = rank.get(row["score"], 0) + 1
        lines.append(f"| {row['score']} | {rank[row['score']]} | L{row['layer']}H{row['head']} | {row['value']:.4f} |")
    return "\n".join(lines) + "\n"


def score_metrics(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, grid in scores.items():
        metrics[f"{name}.max"] = float(grid.max())
        for l in range(grid.shape[0]):
            metrics[f"{name}.layer{l}.max"] = float(grid[l].max())
            for h in range(grid.shape[1]):
                metrics[f"{name}.L{l}H{h}"] = float(grid[l, h])
    return metrics


def score_every_head(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: HeadScoresConfig,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Previous-token, duplicate-token and induction score of every head, averaged over ``tokens``.

    ``tokens`` are probe sequences with repeats (e.g. random tokens then the same
    again). Logs every score as a metric, a heatmap per score and the top heads' table;
    returns ``{score: [[per head] per layer]}`` for the three scores and ``top_heads``:
    the top_k heads of each score as {score, layer, head, value}.
    """
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise ValueError(f"expected tokens of shape [batch >= 1, pos >= 2], found {tuple(tokens.shape)}")
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(f"expected sequences of at most n_ctx={model.cfg.n_ctx} tokens, found {tokens.shape[1]}")
    grids = score_heads(model, tokens, batch_size_prompts=settings.batch_size_prompts,
                        exclude_bos=settings.exclude_bos)
    best = top_heads(grids, min(settings.top_k, grids["induction"].size))
    tracker.log_metrics(score_metrics(grids))
    for name, grid in grids.items():
        tracker.log_figure(heatmap_figure(grid, name), f"{name}_scores")
    tracker.log_text(top_heads_markdown(best), "top_heads.md")
    return {**{name: grid.tolist() for name, grid in grids.items()}, "top_heads": best}


def score_heads(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *, batch_size_prompts: int,
                exclude_bos: bool) -> dict[str, np.ndarray]:
    """Each score's [layer, head] grid, averaged over ``tokens``' sequences."""
    import torch

    n_layers = model.cfg.n_layers
    # Sums over sequences as [layer, head] float64 tensors; divided at the end.
    sums = {name: torch.zeros(n_layers, model.cfg.n_heads, dtype=torch.float64) for name in SCORES}
    batches = torch.split(tokens, batch_size_prompts)
    with torch.inference_mode():
        for batch in progress(batches, desc="head scores", unit="batch"):
            _, cache = model.run_with_cache(
                batch.to(model.cfg.device), names_filter=lambda name: name.endswith("hook_pattern")
            )
            detections = [detection_patterns(seq) for seq in batch]
            # Layer by layer, so only one layer's patterns are ever on the CPU at once.
            for layer in range(n_layers):
                scores = layer_scores(cache["pattern", layer], detections, exclude_bos)
                for name in SCORES:
                    sums[name][layer] += scores[name].sum(dim=0)
            del cache

    grids = {name: (total / tokens.shape[0]).numpy() for name, total in sums.items()}
    return grids


def heatmap_figure(grid: np.ndarray, name: str) -> Any:
    """Layers down, heads across, on a fixed [0, 1] scale so figures compare across runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers, n_heads = grid.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * n_heads, 1.0 + 0.45 * n_layers))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_heads), [f"H{h}" for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [f"L{l}" for l in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"{name.replace('_', '-')} score")
    fig.colorbar(image, ax=ax)
    if grid.size <= MAX_ANNOTATED_CELLS:
        for l in range(n_layers):
            for h in range(n_heads):
                value = grid[l, h]
                ax.text(h, l, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 0.6 else "white")
    fig.tight_layout()
    return fig
