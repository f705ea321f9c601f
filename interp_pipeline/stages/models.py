"""The load-model stage: one config group, five sources, one HookedTransformer-like model out.

Only trained models are stored in the stage cache (safetensors + config, see
interp_pipeline.models.storage); the others are cheaper to load again from their
source than to copy, and their cache key still pins everything downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.models.config import ModelConfig
from interp_pipeline.models.loading import check_model_settings
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

TRAINED_METRICS = ("train/loss", "lr", "eval/*", "steps_trained", "stopped_early_at", "resumed_from_step")


def _shape(settings: ModelConfig, inputs: Mapping[str, Any]) -> Any:
    from interp_pipeline.models.shape import shape_of_model

    return shape_of_model(settings)


def _metrics(settings: ModelConfig) -> tuple[str, ...]:
    return ("n_params", *(TRAINED_METRICS if settings.source == "trained" else ()))


@stage("load_model", outputs=("model",), config=ModelConfig, cache=lambda params: params["source"] == "trained",
       preflight=check_model_settings, shape=_shape, metrics=_metrics, version=2, key_exclude=("n_devices",),
       summary=("n_params", "eval/*", "steps_trained"))
def load_model(settings: ModelConfig, tracker: Tracker = NULL_TRACKER, workdir: Path | None = None) -> HookedTransformer:
    """A model from ``settings.source`` (see interp_pipeline.models.config.ModelConfig), in eval mode.

    Logs the model's identity (source, name, revision or checksum, parameter count,
    dtype, device) as tags and ``n_params`` as a metric.
    """
    from interp_pipeline.models.loading import load

    return load(settings, tracker, workdir)
