"""The evaluate_sae stage: an SAE evaluated on token sequences, spliced into its model.

``evaluate_sae`` takes any model, SAE and token sequences (the held-out ones that
stages/heldout_tokens.py picks from a store, or another dataset stage's output) and reports SAELens's
``run_evals`` metrics under SAELens's names. Its settings are SAEEvalConfig (interp_pipeline.sae.config);
the work is interp_pipeline.sae.evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.sae.config import SAEEvalConfig
from interp_pipeline.sae.evaluation import check_eval_settings, check_eval_shapes
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


# SAELens's run_evals names (reconstruction_quality/..., sparsity/...), ours beside them, and the
# same under <name>/ when several SAEs are evaluated.
_EVAL_GROUPS = ("reconstruction_quality", "sparsity", "shrinkage", "model_performance_preservation",
                "model_behavior_preservation", "token_stats")
EVAL_METRICS = (*(f"{group}/*" for group in _EVAL_GROUPS), *(f"*/{group}/*" for group in _EVAL_GROUPS))


@stage("evaluate_sae", outputs=("metrics",), config=SAEEvalConfig, preflight=check_eval_settings,
       check_shapes=check_eval_shapes, metrics=EVAL_METRICS, version=1,
       summary=("reconstruction_quality/explained_variance", "sparsity/l0", "model_performance_preservation/ce_loss_score",
                "sparsity/dead_features_fraction", "*/reconstruction_quality/explained_variance",
                "*/model_performance_preservation/ce_loss_score"))
def evaluate_sae(model: Any, sae: Any, tokens: Int[Tensor, "batch pos"], settings: SAEEvalConfig,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, float]:
    """Reconstruction, sparsity and (with the SAE spliced in at its hook) CE loss and KL on ``tokens``.

    ``hook``: where to splice the SAE; by default the hook it was trained on
    (``sae.cfg.metadata.hook_name``). ``max_sequences``: evaluate on the first so
    many sequences only. Returns the scalar metrics; the per-latent densities and
    their histogram go to the tracker. ``sae`` may be several SAEs by name (train_sae
    with ``sae.variants``): each is evaluated in its own child run, and the metrics
    come back as ``<name>/<metric>``.
    """
    from interp_pipeline.sae.evaluation import evaluate_saes

    return evaluate_saes(model, sae, tokens, settings, tracker)
