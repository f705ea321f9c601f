"""Fit one probe (and its control) per hook of an activation store, in memory or streamed; the
linear_probe stage's work start to end (:func:`probe_store`): its metrics, figure and table."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.probes.config import ProbeConfig
from interp_pipeline.probes.fit import Probe, accuracies, fit_sklearn, fit_streamed, standardizer
from interp_pipeline.probes.labels import ProbeRows, control_labels, heldout_mask

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.tracking.base import Tracker

PER_HOOK = ("train_acc", "heldout_acc", "control_train_acc", "control_heldout_acc", "selectivity", "majority_acc")
# Each per-hook metric twice: with the hook's index as step (one chart), and by hook name for expect:.
METRICS = (*PER_HOOK, *(f"{name}/*" for name in PER_HOOK), "n_rows", "n_heldout_rows", "n_classes",
           "best_heldout_acc", "best_selectivity")


@dataclass
class HookResult:
    hook: str
    backend: str
    probe: Probe
    control_probe: Probe
    metrics: dict[str, float]


def choose_backend(settings: ProbeConfig, n_rows: int, width: int) -> str:
    if settings.backend != "auto":
        return settings.backend
    return "sklearn" if n_rows * width * 8 <= settings.memory_limit_mb * 2 ** 20 else "torch"


def row_batches(store: Any, hook: str, rows: np.ndarray, batch_size_rows: int):
    """A fresh pass over ``rows`` of ``hook`` per call: (activations flattened to [b, d], indices into rows)."""
    def passes() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, rows.size, batch_size_rows):
            chunk = store.read(hook, rows[start:start + batch_size_rows], as_torch=False)
            yield chunk.reshape(len(chunk), -1), np.arange(start, start + len(chunk))
    return passes


def probe_hook(store: Any, hook: str, rows: ProbeRows, settings: ProbeConfig) -> HookResult:
    """Train the probe and its control on the training sequences' rows of ``hook``; accuracies on both splits."""
    heldout = heldout_mask(rows.sequence, settings.heldout_fraction, settings.seed)
    train = ~heldout
    control = control_labels(rows, settings.control, settings.seed)
    width = math.prod(store.row_shape(hook))
    backend = choose_backend(settings, rows.rows.size, width)
    batches = row_batches(store, hook, rows.rows, settings.batch_size_rows)
    options = {"C": settings.C, "max_iter": settings.max_iter, "tol": settings.tol}
    if backend == "sklearn":
        x = np.asarray(store.read(hook, rows.rows, as_torch=False), np.float64).reshape(rows.rows.size, -1)
        mean, std = standardizer(x[train])
        fitted = {name: fit_sklearn(x[train], y[train], rows.n_classes, mean=mean, std=std, **options)
                  for name, y in (("probe", rows.y), ("control", control))}
        batches = lambda: iter([(x, np.arange(len(x)))])  # noqa: E731 - already in memory
    else:
        mean, std = standardizer(batches=batches, mask=train)
        fitted = {name: fit_streamed(batches, y, train, rows.n_classes, mean=mean, std=std, **options)
                  for name, y in (("probe", rows.y), ("control", control))}
    acc = accuracies(fitted, {"probe": rows.y, "control": control}, batches, {"train": train, "heldout": heldout})
    counts = np.bincount(rows.y[train], minlength=rows.n_classes)
    metrics = {
        "train_acc": acc["probe_train"], "heldout_acc": acc["probe_heldout"],
        "control_train_acc": acc["control_train"], "control_heldout_acc": acc["control_heldout"],
        # Hewitt & Liang (2019): accuracy on the property minus accuracy on the control task.
        "selectivity": acc["probe_heldout"] - acc["control_heldout"],
        # Predicting the training split's most frequent label on the held-out rows.
        "majority_acc": float(np.mean(rows.y[heldout] == counts.argmax())),
    }
    return HookResult(hook, backend, fitted["probe"], fitted["control"], metrics)


def check_heldout_fraction(settings: ProbeConfig) -> None:
    """Pre-flight: some sequences are left to train on (the schema's ``fraction`` allows 1)."""
    if not settings.heldout_fraction < 1:
        raise ConfigError("heldout_fraction", f"expected a fraction strictly between 0 and 1, found "
                                              f"{settings.heldout_fraction!r}")


def probe_store(store: Mapping[str, Any], labels: Mapping[str, Tensor], settings: ProbeConfig,
                tracker: Tracker) -> dict[str, Tensor]:
    """One probe and its control per hook of ``store`` (cache_activations' output) on ``labels``; logs
    :data:`METRICS`, the accuracy-by-layer figure and a table; returns the probes as tensors
    (``HOOK/weight``, ``/bias``, ``/mean``, ``/std``, ``/classes``: the label values)."""
    import torch

    from interp_pipeline.activations.reader import ActivationStore
    from interp_pipeline.probes.labels import probe_rows
    from interp_pipeline.probes.plots import accuracy_by_layer_figure
    from interp_pipeline.common.progress import progress

    check_heldout_fraction(settings)
    opened = ActivationStore.open(store["store_uri"])
    for index, hook in enumerate(settings.hooks or []):
        if hook not in opened.hooks:
            raise ConfigError(f"hooks[{index}]", f"expected a hook the store caches ({one_of(opened.hooks)}), "
                                                 f"found '{hook}'", suggestion=did_you_mean(hook, opened.hooks))
    rows = probe_rows(opened, labels)
    chosen = list(settings.hooks or opened.hooks)
    by_metric: dict[str, list[float]] = {name: [] for name in PER_HOOK}
    probes: dict[str, Tensor] = {}
    for step, hook in enumerate(progress(chosen, desc="probes", unit="hook")):
        result = probe_hook(opened, hook, rows, settings)
        tracker.log_metrics(result.metrics, step=step)
        tracker.log_metrics({f"{name}/{hook}": value for name, value in result.metrics.items()})
        for name, value in result.metrics.items():
            by_metric[name].append(value)
        for part in ("weight", "bias", "mean", "std"):
            probes[f"{hook}/{part}"] = torch.from_numpy(getattr(result.probe, part).astype("float32"))
        probes[f"{hook}/classes"] = torch.tensor(rows.classes)  # one tensor per hook: safetensors refuses shared memory
        tracker.set_tags({f"backend/{hook}": result.backend})
    heldout = int(heldout_mask(rows.sequence, settings.heldout_fraction, settings.seed).sum())
    tracker.log_metrics({"n_rows": rows.rows.size, "n_heldout_rows": heldout, "n_classes": rows.n_classes,
                         "best_heldout_acc": max(by_metric["heldout_acc"]),
                         "best_selectivity": max(by_metric["selectivity"])})
    tracker.log_figure(accuracy_by_layer_figure(chosen, by_metric, f"linear probes ({rows.n_classes} classes, "
                                                                    f"{rows.rows.size} rows, control: "
                                                                    f"{settings.control})"),
                       "probe_accuracy_by_layer")
    tracker.log_text(_table(chosen, by_metric), "probes.md")
    return probes


def _table(hooks: list[str], metrics: dict[str, list[float]]) -> str:
    lines = ["| hook | " + " | ".join(PER_HOOK) + " |", "| --- |" + " ---: |" * len(PER_HOOK)]
    for i, hook in enumerate(hooks):
        lines.append(f"| {hook} | " + " | ".join(f"{metrics[m][i]:.3f}" for m in PER_HOOK) + " |")
    return "\n".join(lines) + "\n"
