"""Activation statistics: run a model over token batches and summarise chosen hooks
(interp_pipeline.analysis.activation_stats).

The smoke experiment's analysis stage: cheap, but it touches what real stages do
(hooks by TransformerLens name, iterative metrics, a figure, a JSON output).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import ActivationStatsConfig
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def _check_shapes(settings: ActivationStatsConfig, inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is None:
        return
    for index, hook in enumerate(settings.hooks):
        model.check_hook(f"hooks[{index}]", hook)
    if tokens is not None and tokens.seq_len is not None:
        model.check_fits_context("inputs.tokens", tokens.seq_len)


@stage("activation_stats", outputs=("stats",), config=ActivationStatsConfig, check_shapes=_check_shapes,
       summary=("loss_mean", "norm_mean.*"),
       metrics=lambda settings: ["loss", "loss_mean", *(f"norm_mean.{h}" for h in settings.hooks)])
def activation_stats(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: ActivationStatsConfig,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, dict[str, float]]:
    """Per hook: mean, standard deviation and mean L2 norm (over the last axis) of its activations;
    the loss of each batch and their mean as metrics, and a bar chart of the norms."""
    from interp_pipeline.analysis.activation_stats import activation_stats as summarise

    return summarise(model, tokens, settings, tracker)
