"""The sae_features stage: an SAE's features on prompts, and a dashboard of the strongest ones.

SAELens's first tutorial as a stage. Its settings are SAEFeaturesConfig (interp_pipeline.analysis.config);
the work, and the checks of the settings against the inputs' shapes, are
interp_pipeline.analysis.sae_feature_report (numbers from .sae_features, cards from .feature_dashboard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import SAEFeaturesConfig
from interp_pipeline.analysis.sae_feature_report import METRICS, check_shapes
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@stage("sae_features", outputs=("features",), config=SAEFeaturesConfig, check_shapes=check_shapes, metrics=METRICS,
       summary=("l0_mean", "explained_variance", "dashboard/features"))
def sae_features(
    model: Any,
    sae: Any,
    prompts: Int[Tensor, "batch pos"],
    tokens: Int[Tensor, "batch pos"] | None = None,
    *,
    settings: SAEFeaturesConfig,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """Per prompt token: L0 and the ``top_k`` features; reconstruction MSE and explained variance;
    a dashboard of the ``dashboard_features`` strongest features over ``tokens`` (default: the prompts).

    ``hook``: where to read the model (default: the hook the SAE was trained on).
    ``exclude_special_tokens``: BOS/EOS/PAD positions stay out of the metrics, the heatmap
    and the max-activating search, as in SAELens's evals. ``max_sequences``: the first so
    many of ``tokens``. ``model_label``/``sae_label`` name them in titles (defaults: the
    model's name, the SAE's architecture, width and hook). Returns everything shown, as JSON.
    """
    from interp_pipeline.analysis.sae_feature_report import look_at_features

    return look_at_features(model, sae, prompts, tokens, settings, tracker)
