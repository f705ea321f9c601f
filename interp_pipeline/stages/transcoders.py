"""Transcoder stages: train per-layer transcoders (interp_pipeline.transcoders.training), and evaluate them.

``train_transcoder`` reads the cache stage's ``store`` (holding every layer's MLP input and
output hooks), or a ``model`` with ``tokens`` streamed; its settings are the
``transcoder`` group's (TranscoderConfig). It resumes a killed run from its checkpoints
and returns a TranscoderSet of SAELens transcoders. ``evaluate_transcoders`` reports
reconstruction per layer and the CE loss with every transcoder spliced in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.transcoders.config import TranscoderConfig, TranscoderEvalConfig, TranscoderSourceConfig
from interp_pipeline.transcoders.training import check_store_hooks, check_transcoder_settings


def _shape(settings: TranscoderConfig, inputs: Mapping[str, Any]) -> Any:
    """{layer: SAEShape} from the store's shape (None when unknown)."""
    from interp_pipeline.pipeline.shapes import SAEShape
    from interp_pipeline.transcoders.training import hooks_for, store_layers

    store = inputs.get("store")
    hooks = getattr(store, "hooks", None)
    if not hooks:
        return None
    layers = store_layers(settings, list(hooks))
    d_model = int(hooks[hooks_for(settings, layers[0])[0]][0])
    return {layer: SAEShape(d_model, settings.expansion_factor * d_model, hooks_for(settings, layer)[0])
            for layer in layers}


@stage("train_transcoder", outputs=("transcoders",), config=TranscoderConfig, preflight=check_transcoder_settings,
       check_shapes=check_store_hooks,
       shape=_shape, version=1, key_exclude=("checkpoint_every",),
       metrics=("steps", "layers", "tokens_per_s", "resumed_from_step", "mean/*", "layer_*/*"),
       summary=("mean/eval/explained_variance", "mean/eval/l0", "mean/dead_features"))
def train_transcoder(store: Any = None, model: Any = None, tokens: Any = None, *, settings: TranscoderConfig,
                     tracker: Tracker = NULL_TRACKER, workdir: Path | None = None) -> Any:
    """One transcoder per layer (MLP input -> MLP output), all trained in one pass over the data."""
    from interp_pipeline.transcoders.training import train_transcoders

    return train_transcoders(settings, store=store, model=model, tokens=tokens, tracker=tracker, workdir=workdir)


@stage("evaluate_transcoders", outputs=("metrics",), config=TranscoderEvalConfig, version=1,
       metrics=("ce_loss_*", "mean/*", "layer_*/*"),
       summary=("ce_loss_score", "mean/explained_variance", "mean/l0"))
def evaluate_transcoders(model: Any, transcoders: Any, tokens: Any, settings: TranscoderEvalConfig,
                         tracker: Tracker = NULL_TRACKER) -> dict[str, float]:
    """Explained variance, L0, dead and dense fractions per layer; CE loss with all transcoders spliced in."""
    from interp_pipeline.transcoders.evaluation import evaluate_transcoders as evaluate

    metrics = evaluate(model, transcoders, tokens, settings)
    tracker.log_metrics(metrics)
    return metrics


@stage("load_transcoders", outputs=("transcoders",), config=TranscoderSourceConfig, version=1, metrics=("layers",))
def load_transcoders(model: Any, settings: TranscoderSourceConfig, tracker: Tracker = NULL_TRACKER) -> Any:
    """Transcoders from SAELens's registry or from disk, one per layer of ``model`` (or ``layers``)."""
    from interp_pipeline.transcoders.storage import load_transcoders as load

    transcoders = load(settings, model.cfg.n_layers)
    tracker.log_metrics({"layers": float(len(transcoders))})
    return transcoders
