"""The head_scores stage: previous-token, duplicate-token and induction score of every head, on a probe.

The scores themselves are interp_pipeline.analysis.head_scores (TransformerLens's head detector).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import HeadScoresConfig
from interp_pipeline.analysis.head_scores import SCORES
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

METRICS = tuple(f"{name}.{part}" for name in SCORES for part in ("max", "layer*.max", "L*H*"))


def _check_shapes(settings: HeadScoresConfig, inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is not None and tokens is not None and tokens.seq_len is not None:
        model.check_fits_context("inputs.tokens", tokens.seq_len)


@stage("head_scores", outputs=("scores",), config=HeadScoresConfig, check_shapes=_check_shapes, metrics=METRICS,
       summary=("induction.max", "previous_token.max", "duplicate_token.max"))
def head_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: HeadScoresConfig,
                tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Previous-token, duplicate-token and induction score of every head, averaged over ``tokens``
    (probe sequences with repeats); ``{score: [[per head] per layer]}`` and the ``top_heads``."""
    from interp_pipeline.analysis.head_scores import score_every_head

    return score_every_head(model, tokens, settings, tracker)
