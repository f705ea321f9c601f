"""The rome_edit stage: ROME rank-one edits of the toy facts model (interp_pipeline.editing).

It checks its params against the model's shape before any work, estimates the key covariance on a
token dataset, makes each requested edit on a copy of the model (the input model, perhaps served
from the stage cache, is never changed), reports ROME's metrics averaged over the edits, and outputs
the first edit's model for later stages (``rome.model``: logit_lens, causal_tracing, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

EDIT_METRICS = ("efficacy", "generalization", "specificity", "essence", "efficacy_score", "generalization_score",
                "specificity_score", "true_object_recall", "neighbourhood_recall",
                "new_object_prob")
METRICS = (*EDIT_METRICS, *(f"{m}_before" for m in EDIT_METRICS if "score" not in m), "edit*/*", "layer", "n_edits",
           "delta_nll", "delta_kl", "delta_norm_ratio", "covariance_tokens")


def _check_params(params: dict[str, Any]) -> None:
    from interp_pipeline.editing.requests import check_requests

    if not params.get("task"):
        raise ConfigError("task", "expected the facts task's config (name: facts, ...), found none")
    check_requests(params["task"], params.get("requests") or [])
    if not (params.get("requests") or params.get("n_random_requests", 0)):
        raise ConfigError("n_random_requests", "expected at least one edit: requests or n_random_requests >= 1")
    for key in ("steps", "n_neighbours", "batch_size"):
        value = params.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"expected an integer >= 1, found {value!r}")
    for key in ("lr", "covariance_ridge"):
        value = params.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (key == "lr" and not value):
            raise ConfigError(key, f"expected a {'positive' if key == 'lr' else 'non-negative'} number, found {value!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    if model is None:
        return
    if model.attn_only or model.d_mlp is None:
        raise ConfigError("inputs.model", "expected a model with MLPs (ROME edits an MLP), found an attention-only one")
    if params.get("layer") is not None:
        model.check_layer("layer", params["layer"])
    elif inputs.get("tracing", None) is None and "tracing" not in inputs:
        raise ConfigError("layer", "expected an MLP layer to edit, or a causal_tracing input that picks one; found "
                                   "neither")


@stage("rome_edit", outputs=("model", "edit"), preflight=_check_params, check_shapes=_check_shapes, metrics=METRICS,
       summary=("efficacy", "generalization", "specificity"))
def rome_edit(
    model: Any,
    tokens: Tensor,
    task: Mapping[str, Any],
    tracing: Mapping[str, Any] | None = None,
    layer: int | None = None,
    requests: Sequence[Mapping[str, Any]] = (),
    n_random_requests: int = 8,
    n_neighbours: int = 10,
    steps: int = 100,
    lr: float = 0.5,
    kl_weight: float = 0.0625,
    weight_decay: float = 0.5,
    covariance_ridge: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """ROME (Meng et al. 2022) edits of (subject, relation, new object) facts at one MLP layer.

    ``layer``: the MLP to edit; None takes the layer a causal_tracing input points at. The key
    covariance is estimated over ``tokens`` (padding left out), plus ``covariance_ridge`` x its mean
    eigenvalue on the diagonal (a toy's keys may not span every direction). Edits: ``requests``
    ({subject, relation, new_object}) and ``n_random_requests`` drawn with ``seed``; each is made alone
    on the original model. Metrics (means over edits; per edit as ``editN/...``): efficacy,
    generalization, specificity, essence (interp_pipeline.editing.evaluate). Outputs the first edit's
    model and its ``edit`` (k*, v*, C^-1 k*, the new W_out).
    """
    import torch

    from interp_pipeline.editing.evaluate import edit_metrics
    from interp_pipeline.editing.requests import make_requests, request_prompts
    from interp_pipeline.editing.rome import edited_copy, key_covariance, rome_edit as edit_once
    from interp_pipeline.progress import progress

    _check_params({"task": task, "requests": list(requests), "n_random_requests": n_random_requests,
                   "steps": steps, "n_neighbours": n_neighbours, "batch_size": batch_size, "lr": lr,
                   "covariance_ridge": covariance_ridge})
    _require_hooked_transformer(model)
    layer = _layer(model, layer, tracing)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else None
    mask = tokens != pad if pad is not None else None
    covariance = key_covariance(model, layer, tokens, batch_size=batch_size, mask=mask)
    covariance += covariance_ridge * covariance.diagonal().mean() * torch.eye(covariance.shape[0], dtype=covariance.dtype)
    chosen = make_requests(task, list(requests), n_random_requests, seed)
    totals: dict[str, float] = {}
    first = None
    for index, request in enumerate(progress(chosen, desc="rome edits", unit="edit")):
        prompts = request_prompts(model, task, request, n_neighbours, seed)
        edit = edit_once(model, layer, covariance, prompts.rewrite, int(model.tokenizer.convert_tokens_to_ids(
            request.new_object)), essence=prompts.essence, key_prompts=prompts.key_prefixes, steps=steps, lr=lr,
            kl_weight=kl_weight, weight_decay=weight_decay, seed=seed)
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
            first = (edited, {"key": edit.key.float(), "value": edit.value.float(), "left": left.float(),
                              "W_out": edit.weight.detach().float().cpu()})
        else:
            del edited
    means = {name: value / len(chosen) for name, value in totals.items()}
    tracker.log_metrics({**means, "layer": layer, "n_edits": len(chosen), "covariance_tokens": int(
        mask.sum()) if mask is not None else tokens.numel()})
    return {"model": first[0], "edit": first[1]}


def _require_hooked_transformer(model: Any) -> None:
    from transformer_lens import HookedTransformer

    if not isinstance(model, HookedTransformer):
        # A TransformerBridge keeps the Hugging Face module's own MLP weights (Conv1D or Linear, per
        # architecture), which this edit does not map yet.
        raise ConfigError("inputs.model", f"expected a HookedTransformer (ROME edits its W_out), found "
                                          f"{type(model).__name__}")
    if model.cfg.attn_only or model.cfg.d_mlp is None:
        raise ConfigError("inputs.model", "expected a model with MLPs (ROME edits an MLP), found an attention-only one")
    if model.tokenizer is None:
        raise ConfigError("inputs.model", "expected a model with a tokenizer (the facts prompts are text), found none")


def _layer(model: Any, layer: int | None, tracing: Mapping[str, Any] | None) -> int:
    if layer is not None:
        if not 0 <= layer < model.cfg.n_layers:
            raise ConfigError("layer", f"expected a layer in 0..{model.cfg.n_layers - 1}, found {layer}")
        return int(layer)
    if tracing is None:
        raise ConfigError("layer", "expected an MLP layer to edit, or a causal_tracing input that picks one; "
                                   "found neither")
    from interp_pipeline.editing.tracing_layer import layer_from_tracing

    return layer_from_tracing(tracing)
