"""The head_scores stage: previous-token, duplicate-token and induction score of every head, on a probe.

The scores themselves are interp_pipeline.analysis.head_scores (TransformerLens's head detector).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.head_scores import SCORES
from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def _check_params(params: Mapping[str, Any]) -> None:
    for key in ("batch_size", "top_k"):
        value = params.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"expected a positive integer, found {value!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is not None and tokens is not None and tokens.seq_len is not None:
        model.check_fits_context("inputs.tokens", tokens.seq_len)


def _metrics(params: dict[str, Any]) -> list[str]:
    return [f"{name}.{part}" for name in SCORES for part in ("max", "layer*.max", "L*H*")]


@stage("head_scores", outputs=("scores",), preflight=_check_params, check_shapes=_check_shapes, metrics=_metrics,
       summary=("induction.max", "previous_token.max", "duplicate_token.max"))
def head_scores(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    tracker: Tracker = NULL_TRACKER,
    batch_size: int = 16,
    top_k: int = 10,
    exclude_bos: bool = True,
) -> dict[str, Any]:
    """Previous-token, duplicate-token and induction score of every head, averaged over ``tokens``.

    ``exclude_bos`` (TransformerLens's detect_head option; its default there is False)
    leaves attention to BOS out of each score's denominator. On a ``[BOS] r r`` probe an
    induction head rests on BOS while reading the first half, where there is nothing to
    induct from; counting that rest caps a perfect head at about 0.5.

    ``tokens`` are probe sequences with repeats (e.g. random tokens then the same
    again). Returns ``{score: [[per head] per layer]}`` for the three scores and
    ``top_heads``: the top_k heads of each score as {score, layer, head, value}.
    """
    from interp_pipeline.analysis.head_scores import heatmap_figure, score_heads, score_metrics, top_heads, \
        top_heads_markdown

    _check_params({"batch_size": batch_size, "top_k": top_k})
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise ValueError(f"expected tokens of shape [batch >= 1, pos >= 2], found {tuple(tokens.shape)}")
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(f"expected sequences of at most n_ctx={model.cfg.n_ctx} tokens, found {tokens.shape[1]}")

    grids = score_heads(model, tokens, batch_size=batch_size, exclude_bos=exclude_bos)
    best = top_heads(grids, min(top_k, grids["induction"].size))
    tracker.log_metrics(score_metrics(grids))
    for name, grid in grids.items():
        tracker.log_figure(heatmap_figure(grid, name), f"{name}_scores")
    tracker.log_text(top_heads_markdown(best), "top_heads.md")
    return {**{name: grid.tolist() for name, grid in grids.items()}, "top_heads": best}
