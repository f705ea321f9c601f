"""Toy Models of Superposition (Elhage et al. 2022): train the first toy model across sparsity levels,
then measure which features it represents and at what angles (interp_pipeline.superposition)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker


def _check_params(params: Mapping[str, Any]) -> None:
    for key in ("n_features", "n_hidden", "sparsity_levels", "replicas", "steps", "batch_size", "eval_batch"):
        value = params.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"expected a positive integer, found {value!r}")
    for key in ("importance_decay", "min_feature_probability"):
        value = params.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ConfigError(key, f"expected a number in (0, 1], found {value!r}")


def _models_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, int]:
    return {"n_features": int(params.get("n_features", 5)), "n_hidden": int(params.get("n_hidden", 2))}


@stage("train_tms", outputs=("models",), preflight=_check_params, shape=_models_shape, summary=("eval_loss_dense", "eval_loss_sparse"),
       metrics=("loss", "eval_loss_dense", "eval_loss_sparse", "eval_loss"))
def train_tms(
    n_features: int = 5,
    n_hidden: int = 2,
    importance_decay: float = 0.9,
    sparsity_levels: int = 10,
    min_feature_probability: float = 0.05,
    replicas: int = 4,
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 1e-2,
    eval_batch: int = 20000,
    log_every: int = 100,
    seed: int = 0,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """One toy model per feature probability (1 down to ``min_feature_probability``, log-spaced),
    the best of ``replicas`` each; returns W ``[levels, n_features, n_hidden]``, b, the
    probabilities, the importances and the held-out losses."""
    _check_params(locals())
    from interp_pipeline.superposition.tms import best_of_replicas, feature_probabilities

    def on_step(step: int, loss: Any) -> None:
        if step % log_every == 0 or step == steps - 1:
            tracker.log_metrics({"loss": float(loss.mean())}, step=step)

    models = best_of_replicas(
        feature_probabilities(sparsity_levels, min_feature_probability), replicas, n_features, n_hidden,
        importance_decay, eval_batch=eval_batch, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
        on_step=on_step)
    for level, loss in enumerate(models["eval_loss"].tolist()):
        tracker.log_metrics({"eval_loss": loss}, step=level)
    tracker.log_metrics({"eval_loss_dense": float(models["eval_loss"][0]),
                         "eval_loss_sparse": float(models["eval_loss"][-1])})
    return models


def _check_geometry(params: Mapping[str, Any]) -> None:
    value = params.get("represented_norm", 0.5)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError("represented_norm", f"expected a number > 0, found {value!r}")


def _check_models(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Before any training: angles are read in a plane, so the models need exactly 2 hidden dimensions."""
    shape = inputs.get("models")
    if shape is not None and shape["n_hidden"] != 2:
        raise ConfigError("inputs.models", f"expected models with n_hidden 2 (angles are read in a plane), "
                                           f"found {shape['n_hidden']}")


GEOMETRY_METRICS = ("dense_sparsity", "dense_represented", "dense_most_important_kept", "dense_angle_deg",
                    "sparse_sparsity", "sparse_represented", "sparse_gap_min_deg", "sparse_gap_max_deg",
                    "sparse_polygon_deg", "sparse_norm_min", "represented_features")


@stage("tms_geometry", outputs=("geometry",), preflight=_check_geometry, check_shapes=_check_models, metrics=GEOMETRY_METRICS,
       summary=("dense_represented", "dense_angle_deg", "sparse_represented", "sparse_gap_*"))
def tms_geometry(models: Mapping[str, Any], represented_norm: float = 0.5,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Per sparsity level: the represented features and the angles between their directions; the
    summary metrics of interp_pipeline.superposition.geometry.summarise; the paper's figure."""
    _check_geometry({"represented_norm": represented_norm})
    from interp_pipeline.superposition.geometry import directions_figure, level_geometry, summarise

    W = models["W"]
    if W.shape[-1] != 2:
        raise ConfigError("models", f"expected models with n_hidden 2 (angles are read in a plane), found {W.shape[-1]}")
    levels = [level_geometry(W[i], float(p), represented_norm) for i, p in enumerate(models["feature_probability"])]
    summary = summarise(levels, n_hidden=2)
    tracker.log_metrics(summary)
    for step, level in enumerate(levels):
        tracker.log_metrics({"represented_features": float(len(level.represented))}, step=step)
    tracker.log_figure(directions_figure(W, levels, models["importance"]), "feature_directions")
    return {"summary": summary, "levels": [level.as_dict() for level in levels]}
