"""Toy Models of Superposition (Elhage et al. 2022): train the first toy model across sparsity levels,
then measure which features it represents and at what angles (interp_pipeline.superposition)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.superposition.config import TMSConfig, TMSGeometryConfig
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker


def _models_shape(settings: TMSConfig, inputs: Mapping[str, Any]) -> dict[str, int]:
    return {"n_features": settings.n_features, "n_hidden": settings.n_hidden}


@stage("train_tms", outputs=("models",), config=TMSConfig, shape=_models_shape,
       summary=("eval_loss_dense", "eval_loss_sparse"), metrics=("loss", "eval_loss_dense", "eval_loss_sparse", "eval_loss"))
def train_tms(settings: TMSConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """One toy model per feature probability (1 down to ``min_feature_probability``, log-spaced),
    the best of ``replicas`` each; returns W ``[levels, n_features, n_hidden]``, b, the
    probabilities, the importances and the held-out losses."""
    from interp_pipeline.superposition.tms import train_across_sparsity

    return train_across_sparsity(settings, tracker)


def _check_models(settings: TMSGeometryConfig, inputs: Mapping[str, Any]) -> None:
    """Before any training: angles are read in a plane, so the models need exactly 2 hidden dimensions."""
    shape = inputs.get("models")
    if shape is not None and shape["n_hidden"] != 2:
        raise ConfigError("inputs.models", f"expected models with n_hidden 2 (angles are read in a plane), "
                                           f"found {shape['n_hidden']}")


GEOMETRY_METRICS = ("dense_sparsity", "dense_represented", "dense_most_important_kept", "dense_angle_deg",
                    "sparse_sparsity", "sparse_represented", "sparse_gap_min_deg", "sparse_gap_max_deg",
                    "sparse_polygon_deg", "sparse_norm_min", "represented_features")


@stage("tms_geometry", outputs=("geometry",), config=TMSGeometryConfig, check_shapes=_check_models,
       metrics=GEOMETRY_METRICS, summary=("dense_represented", "dense_angle_deg", "sparse_represented", "sparse_gap_*"))
def tms_geometry(models: Mapping[str, Any], settings: TMSGeometryConfig,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Per sparsity level: the represented features and the angles between their directions; the
    summary metrics of interp_pipeline.superposition.geometry.summarise; the paper's figure."""
    from interp_pipeline.superposition.geometry import measure_geometry

    return measure_geometry(models, settings.represented_norm, tracker)
