"""ROME edits of a facts model, start to end (the rome_edit stage's work): the layer, the key covariance,
each requested edit made alone on a copy of the model, and ROME's metrics averaged over the edits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.editing.config import RomeConfig
    from interp_pipeline.tracking.base import Tracker

EDIT_METRICS = ("efficacy", "generalization", "specificity", "essence", "efficacy_score", "generalization_score",
                "specificity_score", "true_object_recall", "neighbourhood_recall",
                "new_object_prob")
METRICS = (*EDIT_METRICS, *(f"{m}_before" for m in EDIT_METRICS if "score" not in m), "edit*/*", "layer", "n_edits",
           "delta_nll", "delta_kl", "delta_norm_ratio", "covariance_tokens")
NO_MLP = "expected a model with MLPs (ROME edits an MLP), found an attention-only one"
NO_LAYER = "expected an MLP layer to edit, or a causal_tracing input that picks one; found neither"


def check_model_shape(settings: RomeConfig, model: Any, traced: bool) -> None:
    """Pre-flight on the model's shape: it has MLPs, and the layer to edit is one of them (or a causal_tracing
    input, ``traced``, picks it)."""
    if model.attn_only or model.d_mlp is None:
        raise ConfigError("inputs.model", NO_MLP)
    if settings.layer is not None:
        model.check_layer("layer", settings.layer)
    elif not traced:
        raise ConfigError("layer", NO_LAYER)


def edit_facts(model: Any, tokens: Tensor, tracing: Mapping[str, Any] | None, settings: RomeConfig,
               tracker: Tracker, stats: Mapping[str, Tensor] | None = None) -> dict[str, Any]:
    """Every requested edit (``requests``, then ``n_random_requests`` drawn with ``seed``), each alone on a
    copy of ``model``, at ``layer`` (or the one ``tracing`` picks); logs the metrics per edit
    (``editN/...``) and their means. Returns the first edit's model and its ``edit`` (k*, the rewrite
    prompt's key k, v* = k W', C^-1 k*, the new W_out). ``stats``: a key_covariance output to read C from
    (else estimated here over ``tokens``)."""
    import torch

    from interp_pipeline.editing.evaluate import edit_metrics
    from interp_pipeline.editing.requests import check_edits, make_requests, request_prompts
    from interp_pipeline.editing.covariance import covariance_name, covariance_of
    from interp_pipeline.editing.rome import edited_copy, key_covariance, rome_edit
    from interp_pipeline.common.progress import progress

    check_edits(settings)
    _require_mlp_and_tokenizer(model)
    layer = _layer(model, settings.layer, tracing)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else None
    mask = tokens != pad if pad is not None else None
    if stats is None:
        stats = {covariance_name(layer): key_covariance(model, layer, tokens,
                                                        batch_size_prompts=settings.batch_size_prompts, mask=mask)}
    covariance = covariance_of(stats, layer, settings.covariance_ridge)
    chosen = make_requests(settings.task, list(settings.requests), settings.n_random_requests, settings.seed)
    totals: dict[str, float] = {}
    first = None
    for index, request in enumerate(progress(chosen, desc="rome edits", unit="edit")):
        prompts = request_prompts(model, settings.task, request, settings.n_neighbours, settings.seed)
        edit = rome_edit(model, layer, covariance, prompts.rewrite, int(model.tokenizer.convert_tokens_to_ids(
            request.new_object)), essence=prompts.essence, key_prompts=prompts.key_prefixes, steps=settings.steps,
            lr=settings.lr, kl_weight=settings.kl_weight, weight_decay=settings.weight_decay, seed=settings.seed)
        edited = edited_copy(model, layer, edit.weight)
        metrics = {**edit_metrics(model, edited, request, prompts), **edit.info}
        # Per edit by name only: the plain names are the means over the edits (logged at the end).
        tracker.log_metrics({f"edit{index}/{name}": value for name, value in metrics.items()})
        tracker.set_tags({f"edit{index}": f"{request.subject} / {request.relation_name}: {request.true_object} -> "
                                          f"{request.new_object}"})
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value
        if first is None:
            left = torch.linalg.solve(covariance, edit.key)
            first = (edited, {"key": edit.key.float(), "rewrite_key": edit.rewrite_key.float(),
                              "value": edit.value.float(), "left": left.float(),
                              "W_out": edit.weight.detach().float().cpu()})
        else:
            del edited
    means = {name: value / len(chosen) for name, value in totals.items()}
    tracker.log_metrics({**means, "layer": layer, "n_edits": len(chosen), "covariance_tokens": int(
        mask.sum()) if mask is not None else tokens.numel()})
    return {"model": first[0], "edit": first[1]}


def _require_mlp_and_tokenizer(model: Any) -> None:
    # Both model kinds: a TransformerBridge's MLP output weights are mapped by interp_pipeline.editing.weights.
    if model.cfg.attn_only or model.cfg.d_mlp is None:
        raise ConfigError("inputs.model", NO_MLP)
    if model.tokenizer is None:
        raise ConfigError("inputs.model", "expected a model with a tokenizer (the facts prompts are text), found none")


def _layer(model: Any, layer: int | None, tracing: Mapping[str, Any] | None) -> int:
    if layer is not None:
        if not 0 <= layer < model.cfg.n_layers:
            raise ConfigError("layer", f"expected a layer in 0..{model.cfg.n_layers - 1}, found {layer}")
        return int(layer)
    if tracing is None:
        raise ConfigError("layer", NO_LAYER)
    from interp_pipeline.editing.tracing_layer import layer_from_tracing

    return layer_from_tracing(tracing)
