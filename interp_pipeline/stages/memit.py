"""The key_covariance and memit_edit stages (interp_pipeline.editing): MEMIT's batch edits of the toy facts model.

key_covariance estimates each MLP's key second moment over a token dataset once; rome_edit and
memit_edit read it, so given the same model and tokens they share one stage-cache entry. memit_edit
writes a batch of edits over a range of MLP layers into a copy of the model (the input model is never
changed) and, with ``sizes``, measures MEMIT against ROME applied one edit after another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.editing.config import KeyCovarianceConfig, MemitConfig
from interp_pipeline.editing.run import NO_MLP
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _check_mlp_layers(model: Any, layers: list[int] | None) -> None:
    """The model (its shape, at pre-flight) has MLPs, and each of ``layers`` is one of them."""
    from interp_pipeline.common.errors import ConfigError

    if model.attn_only or model.d_mlp is None:
        raise ConfigError("inputs.model", NO_MLP)
    for index, layer in enumerate(layers or []):
        model.check_layer(f"layers[{index}]", layer)


def _check_covariance_shapes(settings: KeyCovarianceConfig, inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        _check_mlp_layers(inputs["model"], settings.layers)


@stage("key_covariance", outputs=("covariance",), config=KeyCovarianceConfig, check_shapes=_check_covariance_shapes,
       metrics=("covariance_tokens", "n_layers"))
def key_covariance(model: Any, tokens: Tensor, settings: KeyCovarianceConfig,
                   tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """C = E[k k^T] of each MLP's keys (``blocks.L.mlp.hook_post``) over ``tokens``, padding left out:
    uncentred and divided by the token count, as the paper's layer_stats. ``layers``: None for all."""
    from interp_pipeline.editing.covariance import layer_stats

    return layer_stats(model, tokens, settings, tracker)


def _check_batch(settings: MemitConfig) -> None:
    from interp_pipeline.editing.cases import check_batch

    check_batch(settings)


def _check_shapes(settings: MemitConfig, inputs: Mapping[str, Any]) -> None:
    from interp_pipeline.common.errors import ConfigError

    model = inputs.get("model")
    if model is None:
        return
    _check_mlp_layers(model, settings.layers)
    if settings.rome_layer is not None:
        model.check_layer("rome_layer", settings.rome_layer)
    if settings.layers is None and "tracing" not in inputs:
        raise ConfigError("layers", "expected an MLP layer range to edit, or a causal_tracing input that picks one; "
                                    "found neither")


def _metrics(settings: Any) -> list[str]:
    from interp_pipeline.editing.scale import METHODS, SCALE_METRICS

    return [*SCALE_METRICS, *(f"{m}/*/*" for m in METHODS), "n_edits", "first_layer", "last_layer", "rome_layer",
            "delta_nll", "delta_kl", "delta_norm_ratio"]


@stage("memit_edit", outputs=("model", "edit"), config=MemitConfig, preflight=_check_batch, check_shapes=_check_shapes,
       metrics=_metrics, summary=("efficacy", "generalization", "specificity"))
def memit_edit(model: Any, covariance: Mapping[str, Tensor], settings: MemitConfig,
               tracing: Mapping[str, Any] | None = None, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """MEMIT (Meng et al. 2023): ``requests`` then ``n_random_requests`` facts written at once into the MLPs
    of ``layers`` (None: ``window`` layers a causal_tracing input picks), targets optimised at the last
    layer's residual stream, each layer's least-squares update weighed by ``mom2_update_weight`` x C
    (a key_covariance input). ``sizes``: the first N edits for each N, and with ``sequential_rome``
    ROME's updates one after another at ``rome_layer``: metrics ``memit/efficacy/N``, ``rome/...``, and a
    figure against N. Outputs the model with every edit, and ``edit`` (z, each layer's K, R, Delta)."""
    from interp_pipeline.editing.scale import edit_at_scale

    return edit_at_scale(model, covariance, tracing, settings, tracker)
