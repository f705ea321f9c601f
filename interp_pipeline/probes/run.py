"""Fit one probe (and its control) per hook of an activation store, in memory or streamed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from interp_pipeline.probes.fit import Probe, accuracies, fit_sklearn, fit_streamed, standardizer
from interp_pipeline.probes.labels import ProbeRows, control_labels, heldout_mask


@dataclass(frozen=True)
class ProbeSettings:
    heldout_fraction: float = 0.25
    control: str = "shuffle"
    C: float = 1.0
    max_iter: int = 500
    tol: float = 1e-6
    backend: str = "auto"  # auto, sklearn, torch
    memory_limit_mb: float = 1024.0  # auto: sklearn when the labelled rows (float64) fit in this
    batch_size: int = 4096
    seed: int = 0


@dataclass
class HookResult:
    hook: str
    backend: str
    probe: Probe
    control_probe: Probe
    metrics: dict[str, float]


def choose_backend(settings: ProbeSettings, n_rows: int, width: int) -> str:
    if settings.backend != "auto":
        return settings.backend
    return "sklearn" if n_rows * width * 8 <= settings.memory_limit_mb * 2 ** 20 else "torch"


def row_batches(store: Any, hook: str, rows: np.ndarray, batch_size: int):
    """A fresh pass over ``rows`` of ``hook`` per call: (activations flattened to [b, d], indices into rows)."""
    def passes() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, rows.size, batch_size):
            chunk = store.read(hook, rows[start:start + batch_size], as_torch=False)
            yield chunk.reshape(len(chunk), -1), np.arange(start, start + len(chunk))
    return passes


def probe_hook(store: Any, hook: str, rows: ProbeRows, settings: ProbeSettings) -> HookResult:
    """Train the probe and its control on the training sequences' rows of ``hook``; accuracies on both splits."""
    heldout = heldout_mask(rows.sequence, settings.heldout_fraction, settings.seed)
    train = ~heldout
    control = control_labels(rows, settings.control, settings.seed)
    width = math.prod(store.row_shape(hook))
    backend = choose_backend(settings, rows.rows.size, width)
    batches = row_batches(store, hook, rows.rows, settings.batch_size)
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
