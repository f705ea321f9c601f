"""What the activation_patching stage computes: the exact grids, path patching and attribution
estimates over one prompt-pairs batch, labelled, and logged (patching/grid_report.py).

The result is a dict of labelled arrays (patching/labelled.py), one per grid (``head_out``),
per attribution estimate (``head_out.attribution``) and per path (``path_to_final``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.patching.config import PatchingConfig
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.patching.labelled import LabelledArray
    from interp_pipeline.patching.path import Receivers


def check_settings(settings: PatchingConfig) -> None:
    """What the schema cannot say: the grids' names (with a did-you-mean), at least one grid or path
    entry, and each path entry's shape; before any model is loaded."""
    from interp_pipeline.patching.grids import check_grid_names
    from interp_pipeline.patching.path import check_path_entries

    if settings.grids:
        check_grid_names(list(settings.grids), key="grids")
    elif not settings.path:
        raise ConfigError("grids", "expected at least one grid (or a path entry), found none")
    check_path_entries(list(settings.path), key="path")


def check_model(settings: PatchingConfig, cfg: Any) -> list[Receivers]:
    """The grids and path receivers against the model's shape (``cfg``: a HookedTransformerConfig or the
    model's shape before it is built); returns the receivers."""
    from interp_pipeline.patching.grids import check_model_supports
    from interp_pipeline.patching.path import parse_receivers

    check_model_supports(list(settings.grids), cfg, key="grids")
    return [parse_receivers(dict(entry), cfg, f"path[{index}]") for index, entry in enumerate(settings.path)]


def check_inputs(settings: PatchingConfig, inputs: Mapping[str, Any]) -> None:
    """:func:`check_model` against the model's shape (``inputs``: the inputs' shapes), before the model is
    built or trained."""
    if inputs.get("model") is not None:
        check_model(settings, inputs["model"])


def metric_names(settings: PatchingConfig) -> list[str]:
    """The metric names the stage can log (glob patterns), for expect: keys before the run."""
    arrays = [*settings.grids, "path*", *(str(e.get("name")) for e in settings.path
                                         if isinstance(e, Mapping) and e.get("name"))]
    return [f"clean_{settings.metric}", f"corrupted_{settings.metric}", "attribution/seconds",
            *(f"{name}{suffix}/*" for name in arrays for suffix in ("", ".attribution"))]


def patch_pairs(model: Any, pairs: Mapping[str, Tensor], settings: PatchingConfig,
                tracker: Tracker) -> dict[str, LabelledArray]:
    """Patch clean activations into the corrupted run for each grid and path; the attribution estimate
    of each grid; everything logged (the clean and corrupted metric, per-head values, top-k, figures, page)."""
    from interp_pipeline.patching import engine as exact
    from interp_pipeline.patching import path as path_patching
    from interp_pipeline.patching.grid_report import log_results, page_header
    from interp_pipeline.patching.grids import parts

    grids, metric = list(settings.grids), settings.metric
    receivers = check_model(settings, model.cfg)
    names = exact.hook_names_for(grids, model.cfg.n_layers)
    frozen = path_patching.hook_names(model.cfg.n_layers) if receivers else set()
    setup = exact.prepare(model, pairs, metric, normalize=settings.normalize,
                          batch_size_prompts=settings.batch_size_prompts, hook_names=names | frozen,
                          corrupted_hook_names=frozen,
                          fast=None if settings.engine == "auto" else settings.engine == "fast")
    # Which engine ran, in the log: a Bridge takes the fast path only for architectures models/bridge_blocks.py knows.
    logging.getLogger(__name__).info("patching %s: %s", type(model).__name__, "fast path (from the patched layer)"
                                     if setup.forward.fast else "generic path (full runs)")
    labels = GridLabels(model, setup.pairs, settings.normalize, metric)
    tracker.log_metrics({f"clean_{metric}": setup.metric.clean_value,
                         f"corrupted_{metric}": setup.metric.corrupted_value})

    total = sum(exact.count_forwards(g, setup) for name in grids for g in parts(name))
    total += sum(model.cfg.n_layers * len(setup.prompt_groups()) for _ in receivers)  # bar ticks, not exact passes
    results: dict[str, LabelledArray] = {}
    with progress(range(total), desc="patching", total=total, unit="pass") as bar:
        for name in grids:
            start = time.perf_counter()
            results[name] = labels.array(name, exact.run_grid(name, setup, on_forward=lambda: bar.update(1)), "exact")
            tracker.log_metrics({f"{name}/seconds": time.perf_counter() - start})
        for receiver in receivers:
            values = path_patching.path_patch(receiver, setup)
            results[receiver.label] = labels.array(receiver.label, values, "path", grid="head_out")
            bar.update(model.cfg.n_layers * len(setup.prompt_groups()))
    if settings.attribution and grids:
        results.update(_attribution(model, setup, grids, labels, results, settings.batch_size_prompts, tracker))
    log_results(tracker, results, settings.top_k, page_header(model, setup, metric, settings.normalize))
    return results


def _attribution(model: Any, setup: Any, grids: list[str], labels: GridLabels, exact_results: Mapping[str, Any],
                 batch_size_prompts: int, tracker: Tracker) -> dict[str, LabelledArray]:
    """Each grid's gradient estimate, and its correlation with the exact grid (``{grid}/attribution_corr``)."""
    import numpy as np

    from interp_pipeline.patching.attribution import attribution_grid, prepare_attribution

    data = prepare_attribution(model, setup.pairs, setup.metric, grids, batch_size_prompts=batch_size_prompts)
    tracker.log_metrics({"attribution/seconds": data.seconds})
    estimates = {}
    for name in grids:
        estimate = labels.array(f"{name}.attribution", attribution_grid(name, data), "attribution", grid=name)
        exact_values = exact_results[name].values.ravel()
        if np.std(exact_values) > 0 and np.std(estimate.values) > 0:
            correlation = float(np.corrcoef(exact_values, estimate.values.ravel())[0, 1])
            tracker.log_metrics({f"{name}/attribution_corr": correlation})
        estimates[estimate.name] = estimate
    return estimates


class GridLabels:
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

    def array(self, name: str, values: Tensor, method: str, grid: str | None = None) -> LabelledArray:
        """``values`` of grid ``grid`` (default: ``name``) with its dimension names and labels."""
        from interp_pipeline.patching.grids import COMPOSITES, result_dims
        from interp_pipeline.patching.labelled import LabelledArray

        grid = grid or name
        dims = result_dims(grid)
        coords = {}
        for dim, size in zip(dims, values.shape):
            if dim in ("pos", "dest_pos"):
                coords[dim] = self.positions[:size]
            elif dim == "component":
                coords[dim] = list(COMPOSITES[grid])
            else:
                coords[dim] = [str(i) for i in range(size)]
        return LabelledArray(values.numpy(), dims, coords, name=name, attrs={**self.attrs, "method": method})
