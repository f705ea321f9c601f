"""Editing at scale (the memit_edit stage's work): MEMIT on the first N requests for each batch size, against
ROME's rank-one updates applied one after another (Meng et al. 2023, section 5.2 and Figure 5: MEMIT holds
up as edits grow while sequential ROME degrades), each scored on the batch's prompt sets.

Metrics per method and size (``memit/efficacy/128``, ...), top-1 fractions: efficacy (the new object on
the rewrite prompts), generalization (on the relation's other templates), specificity (the never-edited
neighbours' prompts keep their top-1), essence (each edited subject's kept relation keeps its top-1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from interp_pipeline.editing.cases import EditCase
from interp_pipeline.editing.rome import Prompts, _last_logprobs
from interp_pipeline.editing.targets import concat

if TYPE_CHECKING:
    from interp_pipeline.editing.config import MemitConfig
    from interp_pipeline.tracking.base import Tracker

SCALE_METRICS = ("efficacy", "generalization", "specificity", "essence")
METHODS = ("memit", "rome")


def _top1(model: Any, parts: Sequence[Prompts]) -> torch.Tensor:
    batch, _ = concat(parts)
    if not len(batch):
        return torch.zeros(0, dtype=torch.int64)
    with torch.no_grad():
        return _last_logprobs(model, batch).argmax(-1).cpu()


def _fraction(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else float("nan")


class Scorer:
    """The four metrics of a model edited with the first N cases; the original's top-1s read once."""

    def __init__(self, original: Any, cases: Sequence[EditCase]):
        self.cases = list(cases)
        self.neighbours = _top1(original, [c.neighbourhood for c in cases])
        self.essence = _top1(original, [c.essence for c in cases])

    def __call__(self, edited: Any, n: int) -> dict[str, float]:
        cases = self.cases[:n]
        new = torch.as_tensor([c.new for c in cases])
        n_neighbours = sum(len(c.neighbourhood) for c in cases)
        n_essence = sum(len(c.essence) for c in cases)
        paraphrase_new = torch.cat([torch.full((len(c.paraphrase),), c.new) for c in cases])
        return {
            "efficacy": _fraction(_top1(edited, [c.rewrite for c in cases]) == new),
            "generalization": _fraction(_top1(edited, [c.paraphrase for c in cases]) == paraphrase_new),
            "specificity": _fraction(_top1(edited, [c.neighbourhood for c in cases]) == self.neighbours[:n_neighbours]),
            "essence": _fraction(_top1(edited, [c.essence for c in cases]) == self.essence[:n_essence]),
        }


def sequential_rome(model: Any, layer: int, covariance: torch.Tensor, cases: Sequence[EditCase], sizes: Sequence[int],
                    score: Scorer, settings: MemitConfig, deltas: torch.Tensor | None = None) -> dict[int, dict]:
    """ROME's updates one after another on one copy, scored after the first N for each size. ``deltas``
    (optimised on the unedited model at ``hook_mlp_out``) or, None, each optimised on the model so far."""
    from interp_pipeline.editing.rome import optimise_delta, rank_one_update, subject_key
    from interp_pipeline.editing.weights import mlp_out_weight, model_copy, set_mlp_out_weight
    from interp_pipeline.common.progress import progress

    edited = model_copy(model)
    results = {}
    for index, case in enumerate(progress(cases[:max(sizes)], desc="sequential rome", unit="edit")):
        if deltas is None:
            delta, _ = optimise_delta(edited, layer, case.rewrite, case.new, case.essence, steps=settings.steps,
                                      lr=settings.lr, kl_weight=settings.kl_weight,
                                      weight_decay=settings.weight_decay, seed=settings.seed)
        else:
            delta = deltas[index]
        key, at = subject_key(edited, layer, case.key_prompts), subject_key(edited, layer, case.rewrite)
        weight = mlp_out_weight(edited, layer)
        value = at @ weight.detach().double().cpu() + delta
        set_mlp_out_weight(edited, layer, rank_one_update(weight, covariance, key, value, at=at))
        if index + 1 in sizes:
            results[index + 1] = score(edited, index + 1)
    return results


def edit_at_scale(model: Any, covariance: Mapping[str, Any], tracing: Mapping[str, Any] | None,
                  settings: MemitConfig, tracker: Tracker) -> dict[str, Any]:
    """MEMIT for each batch size (the largest's model is the output), sequential ROME if asked; logs every
    metric and a figure of each against the number of edits. Returns ``model`` and ``edit`` (z, K, R, Delta)."""
    from interp_pipeline.editing.cases import edit_cases
    from interp_pipeline.editing.covariance import covariance_of
    from interp_pipeline.editing.memit import apply_memit
    from interp_pipeline.editing.targets import optimise_deltas

    layers, rome_layer = _layers(model, settings, tracing)
    cases = edit_cases(model, settings)
    sizes = sorted(set(settings.sizes)) or [len(cases)]
    covariances = {layer: covariance_of(covariance, layer, settings.covariance_ridge)
                   for layer in {*layers, *([rome_layer] if settings.sequential_rome else [])}}
    optimise = dict(steps=settings.steps, lr=settings.lr, kl_weight=settings.kl_weight,
                    weight_decay=settings.weight_decay, seed=settings.seed)
    first = cases[:max(sizes)]
    score = Scorer(model, first)
    results: dict[str, dict[int, dict]] = {"memit": {}}
    for n in sizes:
        deltas, info = subject_targets(model, layers[-1], first[:n], optimise)
        edited = apply_memit(model, layers, covariances, concat([c.rewrite for c in first[:n]])[0], deltas,
                             mom2_update_weight=settings.mom2_update_weight)
        results["memit"][n] = score(edited.model, n)
    if settings.sequential_rome:
        rome_deltas = None
        if settings.rome_values == "original":
            rome_deltas, _ = optimise_deltas(model, rome_layer, [c.rewrite for c in first], [c.new for c in first],
                                             [c.essence for c in first], **optimise)
        results["rome"] = sequential_rome(model, rome_layer, covariances[rome_layer], first, sizes, score, settings,
                                          rome_deltas)
    _log(results, sizes, layers, rome_layer if settings.sequential_rome else None, info, first, tracker)
    return {"model": edited.model, "edit": edited.tensors()}


def subject_targets(model: Any, layer: int, cases: Sequence[EditCase],
                    optimise: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """MEMIT's targets for a batch: one delta per subject at ``blocks.{layer}.hook_resid_post``, optimised on
    all of its edits' rewrite prompts at once, returned per case [n, d_model]. A subject's key at its last
    token is the same whatever relation follows ("S lives in", "S speaks"), so two edits of one subject
    with separate targets would ask one key for two values, and least squares would give each half."""
    from interp_pipeline.editing.targets import optimise_deltas

    groups: dict[str, list[int]] = {}
    for index, case in enumerate(cases):
        groups.setdefault(case.subject, []).append(index)
    members = list(groups.values())
    rewrites = [concat([cases[i].rewrite for i in m])[0] for m in members]
    deltas, info = optimise_deltas(model, layer, rewrites, [[cases[i].new for i in m] for m in members],
                                   [cases[m[0]].essence for m in members], site="hook_resid_post", **optimise)
    group_of = torch.empty(len(cases), dtype=torch.int64)
    for g, m in enumerate(members):
        group_of[m] = g
    return deltas[group_of], info


def _layers(model: Any, settings: MemitConfig, tracing: Mapping[str, Any] | None) -> tuple[list[int], int]:
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.editing.tracing_layer import layer_from_tracing, layer_range_from_tracing

    n_layers = model.cfg.n_layers
    if settings.layers is not None:
        layers = sorted(settings.layers)
    elif tracing is not None:
        layers = layer_range_from_tracing(tracing, settings.window)
    else:
        raise ConfigError("layers", "expected an MLP layer range to edit, or a causal_tracing input that picks one; "
                                    "found neither")
    if settings.rome_layer is not None:
        rome_layer = settings.rome_layer
    else:
        rome_layer = layer_from_tracing(tracing) if tracing is not None else layers[-1]
    for key, layer in [*(("layers", layer) for layer in layers), ("rome_layer", rome_layer)]:
        if not 0 <= layer < n_layers:
            raise ConfigError(key, f"expected layers in 0..{n_layers - 1}, found {layer}")
    return layers, rome_layer


def _log(results: Mapping[str, Mapping[int, Mapping[str, float]]], sizes: Sequence[int], layers: Sequence[int],
         rome_layer: int | None, info: Mapping[str, Any], cases: Sequence[EditCase], tracker: Tracker) -> None:
    from interp_pipeline.editing.figures import scaling_figure

    metrics: dict[str, float] = {"n_edits": max(sizes), "first_layer": layers[0], "last_layer": layers[-1],
                                 **{k: v for k, v in info.items() if k != "per_request"}}
    if rome_layer is not None:
        metrics["rome_layer"] = rome_layer
    for method, by_size in results.items():
        for n, values in by_size.items():
            metrics.update({f"{method}/{name}/{n}": value for name, value in values.items()})
    largest = results["memit"][max(sizes)]
    metrics.update(largest)  # the plain names: MEMIT with every edit
    tracker.log_metrics(metrics)
    tracker.set_tags({"layers": ",".join(map(str, layers)),
                      "requests": "; ".join(c.label for c in cases[:8]) + ("; ..." if len(cases) > 8 else "")})
    tracker.log_figure(scaling_figure(results, sizes, SCALE_METRICS), "edits_at_scale.png")
