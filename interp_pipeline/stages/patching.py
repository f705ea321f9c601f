"""The activation-patching stage: exact sweeps, their attribution estimates, path patching.

Inputs: a model and a prompt-pairs batch (stages/prompt_pairs.py). Output
``results``: a dict of labelled arrays (patching/labelled.py), one per sweep
(``head_out``), per attribution estimate (``head_out.attribution``) and per path
(``path_to_final``). Logged: the clean and corrupted metric values, every
component of the per-head arrays as a metric (``head_out/L9H9``, so ``expect:``
and MLflow's run comparison can name one), the top-k components of every array,
a PNG heatmap per array and one interactive HTML page with all of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.progress import progress
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.patching.labelled import LabelledArray

ENGINES = ("auto", "fast", "generic")


def _check_params(params: Mapping[str, Any]) -> None:
    from interp_pipeline.patching.metrics import check_metric_name
    from interp_pipeline.patching.path import check_path_entries
    from interp_pipeline.patching.sweeps import check_sweep_names

    if params.get("sweeps"):
        check_sweep_names(list(params["sweeps"]), key="sweeps")
    elif not params.get("path"):
        raise ConfigError("sweeps", "expected at least one sweep (or a path entry), found none")
    check_metric_name(params.get("metric", "logit_diff"), key="metric")
    check_path_entries(list(params.get("path") or []), key="path")
    for key, minimum in (("max_batch", 1), ("top_k", 0)):
        value = params.get(key, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(key, f"expected an integer >= {minimum}, found {value!r}")
    if params.get("engine", "auto") not in ENGINES:
        raise ConfigError("engine", f"expected one of {', '.join(ENGINES)}, found {params.get('engine')!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Sweeps and path receivers against the model's shape, before the model is built or trained."""
    from interp_pipeline.patching.path import parse_receivers
    from interp_pipeline.patching.sweeps import check_model_supports

    model = inputs.get("model")
    if model is None:
        return
    check_model_supports(list(params.get("sweeps") or []), model, key="sweeps")
    for index, entry in enumerate(params.get("path") or []):
        parse_receivers(dict(entry), model, f"path[{index}]")


def _metrics(params: dict[str, Any]) -> list[str]:
    metric = params.get("metric", "logit_diff")
    arrays = [*(params.get("sweeps") or []), "path*", *(str(e.get("name")) for e in params.get("path") or []
                                                          if isinstance(e, Mapping) and e.get("name"))]
    return [f"clean_{metric}", f"corrupted_{metric}", "attribution/seconds",
            *(f"{name}{suffix}/*" for name in arrays for suffix in ("", ".attribution"))]


@stage("activation_patching", outputs=("results",), preflight=_check_params, check_shapes=_check_shapes,
       metrics=_metrics, version=1, summary=("clean_*", "corrupted_*", "*/top1"))
def activation_patching(
    model: Any,
    pairs: Mapping[str, Tensor],
    sweeps: Sequence[str] = ("resid_pre", "head_out"),
    metric: str = "logit_diff",
    normalize: bool = True,
    attribution: bool = True,
    path: Sequence[Mapping[str, Any]] = (),
    max_batch: int = 64,
    top_k: int = 10,
    engine: str = "auto",
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, LabelledArray]:
    """Patch clean activations into the corrupted run for each sweep (and path); see the module doc."""
    from interp_pipeline.patching import engine as exact
    from interp_pipeline.patching import path as path_patching
    from interp_pipeline.patching.sweeps import check_model_supports, parts

    sweeps = list(sweeps)
    check_model_supports(sweeps, model.cfg, key="sweeps")
    receivers = [path_patching.parse_receivers(dict(entry), model.cfg, f"path[{i}]") for i, entry in enumerate(path)]
    names = exact.hook_names_for(sweeps, model.cfg.n_layers)
    frozen = path_patching.hook_names(model.cfg.n_layers) if receivers else set()
    setup = exact.prepare(model, pairs, metric, normalize=normalize, max_batch=max_batch, hook_names=names | frozen,
                          corrupted_hook_names=frozen, fast=None if engine == "auto" else engine == "fast")
    labels = _Labels(model, setup.pairs, normalize, metric)
    tracker.log_metrics({f"clean_{metric}": setup.metric.clean_value,
                         f"corrupted_{metric}": setup.metric.corrupted_value})

    total = sum(exact.count_forwards(s, setup) for name in sweeps for s in parts(name))
    total += sum(model.cfg.n_layers * len(setup.prompt_groups()) for _ in receivers)  # bar ticks, not exact passes
    results: dict[str, LabelledArray] = {}
    with progress(range(total), desc="patching", total=total, unit="pass") as bar:
        for name in sweeps:
            start = time.perf_counter()
            results[name] = labels.array(name, exact.run_sweep(name, setup, on_forward=lambda: bar.update(1)), "exact")
            tracker.log_metrics({f"{name}/seconds": time.perf_counter() - start})
        for receiver in receivers:
            values = path_patching.path_patch(receiver, setup)
            results[receiver.label] = labels.array(receiver.label, values, "path", sweep="head_out")
            bar.update(model.cfg.n_layers * len(setup.prompt_groups()))
    if attribution and sweeps:
        results.update(_attribution(model, setup, sweeps, labels, results, max_batch, tracker))
    _log_results(tracker, results, top_k, _page_header(model, setup, metric, normalize))
    return results


def _attribution(model: Any, setup: Any, sweeps: list[str], labels: _Labels, exact_results: Mapping[str, Any],
                 max_batch: int, tracker: Tracker) -> dict[str, LabelledArray]:
    import numpy as np

    from interp_pipeline.patching.attribution import attribution_sweep, prepare_attribution

    data = prepare_attribution(model, setup.pairs, setup.metric, sweeps, max_batch=max_batch)
    tracker.log_metrics({"attribution/seconds": data.seconds})
    estimates = {}
    for name in sweeps:
        estimate = labels.array(f"{name}.attribution", attribution_sweep(name, data), "attribution", sweep=name)
        exact_values = exact_results[name].values.ravel()
        if np.std(exact_values) > 0 and np.std(estimate.values) > 0:
            correlation = float(np.corrcoef(exact_values, estimate.values.ravel())[0, 1])
            tracker.log_metrics({f"{name}/attribution_corr": correlation})
        estimates[estimate.name] = estimate
    return estimates


_METRIC_MEANING = {
    "logit_diff": "logit of the correct answer minus the wrong one's, at END",
    "answer_prob": "probability of the correct answer at END",
    "kl": "KL divergence from the clean run's END distribution",
    "loss": "next-token loss over every position",
}


def _prompt_text(model: Any, tokens: Tensor) -> str:
    tokenizer = getattr(model, "tokenizer", None)
    ids = tokens.tolist()
    text = tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))
    return text if len(text) <= 200 else text[:199] + "…"


def _page_header(model: Any, setup: Any, metric: str, normalize: bool) -> dict[str, str]:
    """What a reader of patching.html needs before the figures: the model, prompts, metric and normalization."""
    cfg = model.cfg
    clean, corrupted = setup.metric.clean_value, setup.metric.corrupted_value
    return {
        "model": f"{cfg.model_name} ({cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model})",
        "prompts": f"{setup.n_prompts} clean/corrupted pairs of {setup.n_pos} tokens",
        "prompt 0 clean": _prompt_text(model, setup.pairs["clean"][0]),
        "prompt 0 corrupted": _prompt_text(model, setup.pairs["corrupted"][0]),
        "metric": f"{metric}: {_METRIC_MEANING.get(metric, metric)}; "
                  f"clean run {clean:.4g}, corrupted run {corrupted:.4g}",
        "normalization": ("(patched - corrupted) / (clean - corrupted): 0 = corrupted run, 1 = clean run" if normalize
                          else "none: the raw metric of the patched run"),
        "positions": "labels are prompt 0's tokens (IO, S1, S2, END marked where every prompt has them there)"
                     if any(key in setup.pairs for key in ("io_pos", "s1_pos")) else "labels are prompt 0's tokens",
    }


def _log_results(tracker: Tracker, results: Mapping[str, LabelledArray], top_k: int,
                 header: Mapping[str, str]) -> None:
    from interp_pipeline.patching.sweep_report import logs_figures, log_sweep_figures, log_top_k, sweep_page_parts

    tables = []
    for array in results.values():
        if array.dims == ("layer", "head"):  # one metric per head: a few hundred at most
            tracker.log_metrics({f"{array.name}/{array.label(index)}": float(value)
                                 for index, value in _cells(array.values)})
        if top_k:
            tables.append(f"## {array.name}\n\n{log_top_k(tracker, array, top_k)}")
        log_sweep_figures(tracker, array, interactive=False)
    # plotly.js once per run, beside the page (tracker.log_html_page): the page itself stays small.
    if logs_figures(tracker):
        tracker.log_html_page(sweep_page_parts(list(results.values()), header, top_k), "patching.html",
                              "Activation patching")
    if tables:
        tracker.log_text("\n".join(tables), "top_components.md")


def _cells(values: Any) -> Any:
    import numpy as np

    return ((index, values[index]) for index in np.ndindex(values.shape))


class _Labels:
    """Coordinates for result arrays: layer and head numbers, and the first prompt's tokens
    on position axes (the prompts share a template where positions mean anything)."""

    def __init__(self, model: Any, pairs: Mapping[str, Tensor], normalize: bool, metric: str):
        self.model = model
        self.attrs = {"metric": metric, "normalized": bool(normalize), "position_labels": "prompt 0's tokens"}
        self.positions = self._position_labels(model, pairs)

    @staticmethod
    def _position_labels(model: Any, pairs: Mapping[str, Tensor]) -> list[str]:
        """Prompt 0's tokens, and the IOI roles (IO, S1, S2, END) at positions every prompt shares."""
        from interp_pipeline.patching.labelled import position_labels

        tokens = pairs["clean"][0].tolist()
        if getattr(model, "tokenizer", None) is None:
            labels = position_labels([str(t) for t in tokens])
        else:
            labels = position_labels(model.tokenizer.convert_ids_to_tokens(tokens))
        for key, role in (("io_pos", "IO"), ("s1_pos", "S1"), ("s2_pos", "S2"), ("end", "END")):
            positions = pairs.get(key)
            if positions is not None and bool((positions == positions[0]).all()):
                labels[int(positions[0])] += f" {role}"
        return labels

    def array(self, name: str, values: Tensor, method: str, sweep: str | None = None) -> LabelledArray:
        """``values`` of sweep ``sweep`` (default: ``name``) with its dimension names and labels."""
        from interp_pipeline.patching.labelled import LabelledArray
        from interp_pipeline.patching.sweeps import COMPOSITES, result_dims

        sweep = sweep or name
        dims = result_dims(sweep)
        coords = {}
        for dim, size in zip(dims, values.shape):
            if dim in ("pos", "dest_pos"):
                coords[dim] = self.positions[:size]
            elif dim == "component":
                coords[dim] = list(COMPOSITES[sweep])
            else:
                coords[dim] = [str(i) for i in range(size)]
        return LabelledArray(values.numpy(), dims, coords, name=name, attrs={**self.attrs, "method": method})
