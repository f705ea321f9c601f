"""The first toy model of Elhage et al. 2022 ("Toy Models of Superposition"), trained across sparsity levels.

``n_features`` features x_i, each 0 with probability S (its sparsity) and otherwise
uniform in [0, 1], are embedded by W (``n_hidden`` x ``n_features``) and read back
as ReLU(W^T W x + b); the loss is the importance-weighted squared error, importance
I_i = ``importance_decay`` ** i. One model per sparsity level, all trained in one
batched loop (as the paper's notebook does), so a sweep costs about as much as one model.

Written here rather than taken from a library: it is the paper's dozen lines, and no
package the project depends on ships it (SAELens's synthetic generator draws Gaussian
magnitudes and has no reconstruction model; interp_pipeline.sae.toy feeds SAEs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from interp_pipeline.common.progress import progress
from interp_pipeline.superposition.config import TMSConfig
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker


def feature_probabilities(levels: int, min_probability: float) -> torch.Tensor:
    """``levels`` probabilities from 1 (dense) down to ``min_probability``, evenly spaced in log
    (the notebook's ``20 ** -linspace(0, 1, n)`` for ``min_probability`` 1/20)."""
    if levels == 1:
        return torch.tensor([float(min_probability)])
    return min_probability ** torch.linspace(0, 1, levels)


def sample_features(batch: int, probabilities: torch.Tensor, n_features: int,
                    generator: torch.Generator) -> torch.Tensor:
    """``[batch, instances, n_features]``: uniform [0, 1] values, each kept with its instance's probability."""
    shape = (batch, len(probabilities), n_features)
    values = torch.rand(shape, generator=generator)
    keep = torch.rand(shape, generator=generator) <= probabilities[None, :, None]
    return torch.where(keep, values, torch.zeros(()))


def reconstruct(features: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ReLU(W^T W x + b) per instance; ``W`` is ``[instances, n_features, n_hidden]`` (rows: feature directions)."""
    hidden = torch.einsum("bif,ifh->bih", features, W)
    return torch.relu(torch.einsum("bih,ifh->bif", hidden, W) + b)


def importance_weighted_loss(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                              importance: torch.Tensor) -> torch.Tensor:
    """Per instance: the mean over the batch and the features of I_i (x_i - x'_i)^2."""
    return (importance * (x - reconstruct(x, W, b)) ** 2).mean(dim=(0, 2))


def train_toy_models(
    n_features: int,
    n_hidden: int,
    probabilities: Sequence[float] | torch.Tensor,
    importance_decay: float,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train one model per probability; returns W ``[instances, n_features, n_hidden]``, b, the
    probabilities, the importances and each instance's final training loss."""
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.as_tensor(probabilities, dtype=torch.float32)
    importance = importance_decay ** torch.arange(n_features, dtype=torch.float32)
    instances = len(probabilities)
    # xavier_normal_ over the notebook's [instances, features, hidden] shape: the paper's initial scale.
    W = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(instances, n_features, n_hidden),
                                                        generator=generator))
    b = torch.nn.Parameter(torch.zeros(instances, n_features))
    optimizer = torch.optim.AdamW([W, b], lr=lr)
    loss_per_instance = torch.zeros(instances)
    bar = progress(range(steps), desc="tms", total=steps, unit="step")
    for step in bar:
        x = sample_features(batch_size, probabilities, n_features, generator)
        loss_per_instance = importance_weighted_loss(x, W, b, importance)
        optimizer.zero_grad(set_to_none=True)
        loss_per_instance.sum().backward()  # instances share no parameters: each gets its own gradient
        optimizer.step()
        if on_step is not None:
            on_step(step, loss_per_instance.detach())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{float(loss_per_instance.detach().mean()):.4g}")  # type: ignore[attr-defined]
    return {
        "W": W.detach().clone(),
        "b": b.detach().clone(),
        "feature_probability": probabilities,
        "importance": importance,
        "final_loss": loss_per_instance.detach().clone(),
    }


def best_of_replicas(probabilities: torch.Tensor, replicas: int, n_features: int, n_hidden: int,
                     importance_decay: float, *, eval_samples: int, seed: int,
                     **training: object) -> dict[str, torch.Tensor]:
    """Train ``replicas`` models per probability and keep, per probability, the one with the lowest
    loss on a held-out batch.

    Why: gradient descent on this tiny model often stops in a local minimum (measured at 93%
    sparsity: a square of four features with the fifth dropped, held-out loss 0.0036, where
    the pentagon reaches 0.0023); the paper's figures show the optimum. Replicas train in the same batched loop,
    so they cost little more than one model each.
    """
    repeated = probabilities.repeat_interleave(replicas)
    trained = train_toy_models(n_features, n_hidden, repeated, importance_decay, seed=seed, **training)  # type: ignore[arg-type]
    held_out = sample_features(eval_samples, repeated, n_features, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        loss = importance_weighted_loss(held_out, trained["W"], trained["b"], trained["importance"])
    chosen = loss.view(len(probabilities), replicas).argmin(dim=1) + torch.arange(len(probabilities)) * replicas
    return {
        "W": trained["W"][chosen],
        "b": trained["b"][chosen],
        "feature_probability": probabilities.clone(),
        "importance": trained["importance"],
        "eval_loss": loss[chosen],
        "replica_eval_loss": loss.view(len(probabilities), replicas),
    }


def train_across_sparsity(settings: TMSConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, torch.Tensor]:
    """The train_tms stage's work: the best of ``settings.replicas`` models per sparsity level, the
    training loss every ``settings.log_every`` steps and each level's held-out loss logged."""

    def on_step(step: int, loss: torch.Tensor) -> None:
        if step % settings.log_every == 0 or step == settings.steps - 1:
            tracker.log_metrics({"loss": float(loss.mean())}, step=step)

    models = best_of_replicas(
        feature_probabilities(settings.sparsity_levels, settings.min_feature_probability), settings.replicas,
        settings.n_features, settings.n_hidden, settings.importance_decay, eval_samples=settings.eval_samples,
        seed=settings.seed, steps=settings.steps, batch_size=settings.batch_size_samples, lr=settings.lr, on_step=on_step)
    for level, loss in enumerate(models["eval_loss"].tolist()):
        tracker.log_metrics({"eval_loss": loss}, step=level)
    tracker.log_metrics({"eval_loss_dense": float(models["eval_loss"][0]),
                         "eval_loss_sparse": float(models["eval_loss"][-1])})
    return models
