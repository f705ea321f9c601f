"""SAE stages: train SAEs with SAELens (interp_pipeline.sae.training), and the toy-superposition check.

``train_sae`` takes one data input: the cache stage's ``store``, an ``activations``
tensor, ``synthetic`` toy data (``toy_superposition``), or a ``model`` with ``tokens``
whose activations it computes as it trains. Its settings are the ``sae`` group's,
SAEConfig (interp_pipeline.sae.config, with what each architecture reads and how
``variants`` train several SAEs in one pass). It resumes a killed run from its
checkpoints and returns the inference SAE, or with ``variants`` the SAEs by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.sae.config import FeatureRecoveryConfig, SAEConfig, ToySuperpositionConfig
from interp_pipeline.sae.toy import check_toy_settings
from interp_pipeline.sae.training import check_training, check_training_shapes, training_shape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _train_metrics(settings: SAEConfig) -> list[str]:
    # SAELens's step metrics (losses/, metrics/, sparsity/, details/) and the final and held-out ones;
    # with variants each SAE's results come prefixed by its name.
    own = ["steps", "tokens_trained", "steps_per_s", "tokens_per_s", "d_in", "d_sae", "dead_features", "saes",
           "resumed_from_step", "final/*", "eval/*", "losses/*", "metrics/*", "sparsity/*", "details/*"]
    return own + ["*/eval/*", "*/final/*", "*/dead_features"] if settings.variants else own


# Version 2: settings an architecture does not read are None in the params (k for a standard SAE).
# ranks: under torchrun every rank trains on its share of each batch; rank 0 stores and logs the SAE.
@stage("train_sae", outputs=("sae",), config=SAEConfig, preflight=check_training, check_shapes=check_training_shapes,
       shape=training_shape, metrics=_train_metrics, version=2, key_exclude=("checkpoint_every",), ranks=True,
       summary=("eval/explained_variance", "eval/l0", "eval/dead_latents", "steps_per_s",
                "*/eval/explained_variance", "*/eval/l0"))
def train_sae(
    store: Any = None,
    activations: Tensor | None = None,
    synthetic: Mapping[str, Tensor] | None = None,
    model: Any = None,
    tokens: Tensor | None = None,
    *,
    settings: SAEConfig,
    tracker: Tracker = NULL_TRACKER,
    workdir: Path | None = None,
) -> Any:
    """Train one SAE on one hook of ``store`` (or ``activations``, ``synthetic``, or ``model`` run on ``tokens``).

    An unknown setting, a wrong type or a value out of range is a ConfigError. With
    ``variants``, trains one SAE per entry in one pass and returns them by name.
    """
    from interp_pipeline.sae.training import train_saes

    return train_saes(settings, store=store, activations=activations, synthetic=synthetic, model=model,
                      tokens=tokens, tracker=tracker, workdir=workdir)


@stage("toy_superposition", outputs=("toy",), config=ToySuperpositionConfig, preflight=check_toy_settings, version=1,
       metrics=("mean_active", "features_per_dimension"))
def toy_superposition(settings: ToySuperpositionConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Known features in superposition, and how they fire (interp_pipeline.sae.toy); train_sae's ``synthetic``."""
    from interp_pipeline.sae.toy import toy_model

    return toy_model(settings, tracker)


@stage("sae_feature_recovery", outputs=("scores",), config=FeatureRecoveryConfig, version=1,
       summary=("mean_max_cosine_similarity",),
       metrics=lambda settings: ["mean_max_cosine_similarity", f"fraction_recovered_{settings.threshold:g}",
                                 "mean_correlation_coefficient"])
def sae_feature_recovery(sae: Any, toy: Mapping[str, Tensor], settings: FeatureRecoveryConfig,
                         tracker: Tracker = NULL_TRACKER) -> Mapping[str, float]:
    """How well the SAE's decoder recovers known features: MMCS, the fraction above ``threshold``, and MCC."""
    from interp_pipeline.sae.toy import feature_recovery

    return feature_recovery(sae, toy, settings.threshold, tracker)
