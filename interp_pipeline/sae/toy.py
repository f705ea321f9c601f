"""Toy superposition data (Sharkey, Braun and Millidge 2022), made with SAELens's synthetic module.

``n_features`` random unit-norm ground-truth directions in a ``d``-dimensional
space (more features than dimensions: superposition), each firing independently
and rarely, ``avg_active`` at a time on average, with a magnitude drawn around
``magnitude_mean``. The stage stores only this ground truth; training draws fresh
batches from it with SAELens's ActivationGenerator, as the paper did. An SAE that recovers them has, for every true feature, a
decoder direction close to it: the mean max cosine similarity (MMCS) of the paper.

``toy_model`` and ``feature_recovery`` are the toy_superposition and sae_feature_recovery
stages' work (settings: ToySuperpositionConfig, FeatureRecoveryConfig in interp_pipeline.sae.config).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.sae.config import ToySuperpositionConfig
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    import torch


def check_toy_settings(settings: ToySuperpositionConfig) -> None:
    """What the schema's ranges cannot say: no more features active on average than there are."""
    if settings.avg_active > settings.n_features:
        raise ConfigError("avg_active", f"expected a number in (0, n_features={settings.n_features}], "
                                        f"found {settings.avg_active!r}")


def toy_model(settings: ToySuperpositionConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, torch.Tensor]:
    """:func:`make_toy_model` from the stage's settings, checked; logs how many features fire, per dimension."""
    check_toy_settings(settings)  # called from a notebook, the runner's pre-flight has not run
    toy = make_toy_model(settings.n_features, settings.d, avg_active=settings.avg_active,
                         magnitude_mean=settings.magnitude_mean, magnitude_std=settings.magnitude_std,
                         seed=settings.seed)
    tracker.log_metrics({"mean_active": settings.avg_active, "features_per_dimension": settings.n_features / settings.d})
    return toy


def make_toy_model(n_features: int, d: int, *, avg_active: float, magnitude_mean: float, magnitude_std: float,
                   seed: int) -> dict[str, torch.Tensor]:
    """The ground truth as tensors (a stage output the cache stores): features and how they fire."""
    import torch
    from sae_lens.synthetic import FeatureDictionary

    # initializer=None: plain random unit vectors, as in the paper (SAELens's default
    # pushes them apart first, which makes the task easier).
    dictionary = FeatureDictionary(n_features, d, initializer=None, seed=seed)
    return {
        "features": dictionary.feature_vectors.detach().clone(),
        "firing_probabilities": torch.full((n_features,), avg_active / n_features),
        "mean_magnitudes": torch.full((n_features,), float(magnitude_mean)),
        "std_magnitudes": torch.full((n_features,), float(magnitude_std)),
    }


def activation_stream(toy: Mapping[str, torch.Tensor], batch_size: int, *,
                      keep_rng_for_setup: bool = False) -> Iterator[torch.Tensor]:
    """Endless fresh batches ``[batch_size, d]`` from SAELens's generator; global torch RNG (seed it first).

    Setting up (on the first batch) draws from the global RNG too, unless ``keep_rng_for_setup``:
    the stream then depends only on the RNG state it starts from (resuming from a checkpoint).
    """
    import contextlib

    import torch
    from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
    from sae_lens.synthetic.training import SyntheticActivationIterator

    n_features, d = toy["features"].shape
    with torch.random.fork_rng(devices=[]) if keep_rng_for_setup else contextlib.nullcontext():
        dictionary = FeatureDictionary(n_features, d, initializer=None)
        with torch.no_grad():
            dictionary.feature_vectors.copy_(toy["features"])
        dictionary.eval()
        generator = ActivationGenerator(
            n_features, firing_probabilities=toy["firing_probabilities"],
            mean_firing_magnitudes=toy["mean_magnitudes"], std_firing_magnitudes=toy["std_magnitudes"],
            use_sparse_tensors=True,  # a few of hundreds fire: sparse sampling and matmul halve the cost
        )
    iterator = SyntheticActivationIterator(dictionary, generator, batch_size)
    while True:
        with warnings.catch_warnings():
            # torch asks sparse-tensor makers to opt in or out of invariant checks; SAELens's are valid.
            warnings.filterwarnings("ignore", message="Sparse invariant checks")
            batch = next(iterator)
        yield batch


def mean_max_cosine_similarity(true_features: torch.Tensor, decoder: torch.Tensor) -> float:
    """For each true feature, its best cosine similarity with any decoder row; averaged."""
    import torch.nn.functional as F

    cos = F.normalize(true_features.float(), dim=-1) @ F.normalize(decoder.float(), dim=-1).T
    return float(cos.max(dim=1).values.mean())


def feature_recovery(sae: Any, toy: Mapping[str, torch.Tensor], threshold: float,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, float]:
    """How well ``sae``'s decoder recovers the toy's features: MMCS, the fraction of features whose best
    cosine similarity is at least ``threshold``, and SAELens's mean correlation coefficient (MCC); logged."""
    import torch.nn.functional as F
    from sae_lens.synthetic import mean_correlation_coefficient

    features = toy["features"].float()
    decoder = sae.W_dec.detach().float().cpu()
    best = (F.normalize(features.float(), dim=-1) @ F.normalize(decoder, dim=-1).T).max(dim=1).values
    scores = {
        "mean_max_cosine_similarity": mean_max_cosine_similarity(features, decoder),
        f"fraction_recovered_{threshold:g}": float((best >= threshold).float().mean()),
        "mean_correlation_coefficient": float(mean_correlation_coefficient(features, decoder)),
    }
    tracker.log_metrics(scores)
    return scores
