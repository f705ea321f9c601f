"""The settings of the tms experiment's two stages (train_tms, tms_geometry): the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import SI

from interp_pipeline.config.fields import fraction, positive


@dataclass
class TMSConfig:
    """Toy Models of Superposition's first model (interp_pipeline.superposition.tms).

    The paper's notebook (anthropics/toy-models-of-superposition, toy_models.ipynb, "Introduction
    Figure"): 5 features, 2 hidden dimensions, importance 0.9 ** i, 10 models with feature
    probability 20 ** -linspace(0, 1, 10) (dense down to 1/20, i.e. sparsity 0 to 0.95). It trains
    with AdamW at lr 1e-3, batches of 1024, 10,000 steps; here lr 1e-2, batches of 256 and 2,000
    steps reach the same geometry in a tenth of the time, and 4 replicas per level keep the best
    (interp_pipeline.superposition.tms.best_of_replicas says why).
    """

    n_features: int = positive(5)
    n_hidden: int = positive(2)
    importance_decay: float = fraction(0.9, open_below=True)  # I_i = importance_decay ** i
    sparsity_levels: int = positive(10)  # feature probability from 1 down to min_feature_probability, log-spaced
    min_feature_probability: float = fraction(0.05, open_below=True)
    replicas: int = positive(4)  # models per level; the one with the lowest held-out loss is kept
    steps: int = positive(2000)
    batch_size_samples: int = positive(256)  # feature vectors x drawn per step, per level and replica
    lr: float = positive(1e-2)
    eval_samples: int = positive(20000)  # held-out feature vectors per level, choosing the best replica
    log_every: int = positive(100)
    seed: int = SI("${seed}")


@dataclass
class TMSGeometryConfig:
    # A feature is represented when ||W_i|| >= represented_norm (trained models put it near 1 or near 0).
    represented_norm: float = positive(0.5)
