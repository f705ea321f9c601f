"""The logit_lens stage: every layer's residual stream through the final LayerNorm and the unembedding.

The lens, and the stage's work, are interp_pipeline.analysis.logit_lens
(``cache.accumulated_resid(apply_ln=True)``'s semantics, on a HookedTransformer or a
TransformerBridge); the figures analysis.look_figures (PNG) and analysis.look_pages (the
stage's HTML page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import LogitLensConfig
from interp_pipeline.analysis.prompt_set import check_prompt_settings, check_prompt_sources
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

PER_STATE = ("answer_prob", "answer_rank", "answer_top1", "kl_to_final", "agreement")
# Each per-state metric twice: with the state as step (one chart in MLflow), and by state name
# (answer_prob/0_pre ... answer_prob/final_post), which expect: can name.
METRICS = ("n_sequences", *PER_STATE, *(f"{name}/*" for name in PER_STATE))


@stage("logit_lens", outputs=("lens",), config=LogitLensConfig, preflight=check_prompt_settings,
       check_shapes=check_prompt_sources, metrics=METRICS, summary=("answer_prob/final_post", "agreement/final_post"))
def logit_lens(model: Any, tokens: Int[Tensor, "batch pos"] | None = None,
               pairs: Mapping[str, Tensor] | None = None, *, settings: LogitLensConfig,
               tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """The logit lens of each layer: top-k tokens, the answer's probability and rank, KL to the final logits.

    The sequences are ``prompts`` (text; ``answer`` the expected next token after each), or a
    data stage's ``tokens`` (every position's actual next token is its answer) or ``pairs``
    (the answer at END). Per state (``0_pre`` ... ``final_post``), averaged over ``positions``:
    ``answer_prob``, ``answer_rank`` (0 = top), ``answer_top1``, ``kl_to_final`` (KL(final ||
    layer), nats) and ``agreement`` (the layer's top-1 is the model's). Heatmaps of sequence
    ``show_prompt`` (PNG and one HTML page) and a table per state (markdown).
    """
    from interp_pipeline.analysis.logit_lens import lens_report

    return lens_report(model, tokens, pairs, settings, tracker)
