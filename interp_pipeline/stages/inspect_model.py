"""The inspect_model stage: tokens, residual-stream norms, attention patterns and top predictions on prompts.

The work is interp_pipeline.analysis.first_look; the figures analysis.look_figures (PNG) and
analysis.look_pages (the stage's HTML page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import InspectConfig
from interp_pipeline.analysis.first_look import check_inputs, check_settings
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

METRICS = ("n_sequences", "norm/*", "top1_prob", "answer_prob", "answer_top1")


@stage("inspect_model", outputs=("inspection",), config=InspectConfig, preflight=check_settings,
       check_shapes=check_inputs, metrics=METRICS, summary=("top1_prob", "answer_top1"))
def inspect_model(model: Any, tokens: Int[Tensor, "batch pos"] | None = None,
                  pairs: Mapping[str, Tensor] | None = None, *, settings: InspectConfig,
                  tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Tokens, residual norms per layer, attention patterns and top-k next tokens, on prompts or a dataset.

    The sequences are ``prompts`` (text), or a data stage's ``tokens`` (each row's actual next
    token is its target) or ``pairs`` (clean prompts, the answer at END). Logs ``norm/resid_pre``
    (and ``_mid``, ``_post``) with the layer as step, the top-k's ``top1_prob`` and, where a
    target is known, ``answer_prob`` and ``answer_top1`` at ``positions``; tables (markdown),
    PNGs (norms, an attention grid of layers x heads for sequence ``show_prompt``) and one HTML page.
    """
    from interp_pipeline.analysis.first_look import first_look

    return first_look(model, tokens, pairs, settings, tracker)
