"""Logistic-regression probes: scikit-learn on rows held in memory, torch on rows streamed in batches.

Both minimise scikit-learn's objective, ``C * sum(cross-entropy) + ||W||^2 / 2`` (the intercept not
penalised; two classes as one sigmoid logit, more as a softmax), on inputs standardised with the
training rows' mean and std, so the two paths find the same probe (it is a strictly convex problem).
The streamed path runs L-BFGS on the exact full-batch loss, accumulating it and its gradient over
batches read one at a time: memory holds one batch, whatever the number of rows. Hand-written because
scikit-learn needs every row in memory and its ``partial_fit`` (SGD) does not converge to the same probe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# A source of training data: called for each pass, yields (activations [b, d], indices into the labels).
Batches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class Probe:
    """A fitted probe: logits = ((x - mean) / std) @ weight.T + bias; one logit for two classes."""

    weight: np.ndarray  # [1 or n_classes, d]
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.weight.T + self.bias
        if logits.shape[1] == 1:
            return (logits[:, 0] > 0).astype(np.int64)
        return logits.argmax(axis=1)


def standardizer(x: np.ndarray | None = None, batches: Batches | None = None,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the rows (``mask``: those of the training rows), from an array or streamed;
    constant features get std 1 so they stay zero rather than divide by zero."""
    total, squares, count = 0.0, 0.0, 0
    for chunk, index in ([(x, np.arange(len(x)))] if x is not None else batches()):
        chunk = np.asarray(chunk, np.float64)[mask[index] if mask is not None else slice(None)]
        total, squares, count = total + chunk.sum(0), squares + (chunk ** 2).sum(0), count + len(chunk)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return mean, np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max())), std, 1.0)


def fit_sklearn(x: np.ndarray, y: np.ndarray, n_classes: int, *, C: float, max_iter: int, tol: float,
                mean: np.ndarray, std: np.ndarray) -> Probe:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
    model.fit((np.asarray(x, np.float64) - mean) / std, y)
    weight, bias = model.coef_, model.intercept_
    if n_classes > 2 and len(model.classes_) < n_classes:
        # A training split missing some classes: their logits never win.
        full_w, full_b = np.zeros((n_classes, x.shape[1])), np.full(n_classes, -np.inf)
        full_w[model.classes_], full_b[model.classes_] = weight, bias
        weight, bias = full_w, full_b
    return Probe(weight, bias, mean, std)


def fit_streamed(batches: Batches, y: np.ndarray, train: np.ndarray, n_classes: int, *, C: float,
                 max_iter: int, tol: float, mean: np.ndarray, std: np.ndarray) -> Probe:
    """L-BFGS on the full training loss, one batch in memory at a time (each loss evaluation is a pass)."""
    import torch
    import torch.nn.functional as F

    n_train = int(train.sum())
    n_out = 1 if n_classes == 2 else n_classes
    weight = torch.zeros(n_out, mean.size, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_out, dtype=torch.float64, requires_grad=True)
    mean_t, std_t = torch.from_numpy(mean), torch.from_numpy(std)
    labels = torch.from_numpy(y)

    def closure() -> torch.Tensor:
        weight.grad = bias.grad = None
        total = torch.zeros((), dtype=torch.float64)
        for chunk, index in batches():
            keep = train[index]
            if not keep.any():
                continue
            x = (torch.from_numpy(np.asarray(chunk[keep], np.float64)) - mean_t) / std_t
            target = labels[torch.from_numpy(index[keep])]
            logits = x @ weight.T + bias
            loss = (F.binary_cross_entropy_with_logits(logits[:, 0], target.double(), reduction="sum")
                    if n_out == 1 else F.cross_entropy(logits, target, reduction="sum"))
            (loss / n_train).backward()
            total += loss.detach() / n_train
        penalty = (weight ** 2).sum() / (2 * C * n_train)
        penalty.backward()
        return total + penalty.detach()

    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20,
                                  tolerance_grad=tol, tolerance_change=tol * 1e-3, line_search_fn="strong_wolfe")
    optimizer.step(closure)
    return Probe(weight.detach().numpy(), bias.detach().numpy(), mean, std)


def accuracies(probes: dict[str, Probe], targets: dict[str, np.ndarray], batches: Batches,
               splits: dict[str, np.ndarray]) -> dict[str, float]:
    """``{probe}_{split}`` accuracy of each probe against its targets, over one streamed pass."""
    correct = {(p, s): 0 for p in probes for s in splits}
    for chunk, index in batches():
        for name, probe in probes.items():
            hit = probe.predict(chunk) == targets[name][index]
            for split, mask in splits.items():
                correct[name, split] += int(hit[mask[index]].sum())
    return {f"{p}_{s}": correct[p, s] / max(1, int(splits[s].sum())) for p, s in correct}
