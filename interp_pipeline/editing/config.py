"""The settings of the rome_edit stage: the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import SI

from interp_pipeline.config.fields import at_least, positive


@dataclass
class RomeConfig:
    """ROME rank-one edits of one MLP layer (Meng et al. 2022; interp_pipeline.editing), of the toy facts model.

    Each edit is made alone on a copy of the original model. The key covariance gets
    ``covariance_ridge`` x its mean eigenvalue on the diagonal: a toy's keys may not span every direction.
    """

    # The facts task's config (name: facts, ...): its world of subjects; conf/rome/default.yaml
    # reads it from the model's (model.train.task).
    task: Dict[str, Any] = field(default_factory=dict)
    layer: Optional[int] = at_least(0, None)  # the MLP to edit; None: the layer a causal_tracing input picks
    requests: List[Any] = field(default_factory=list)  # [{subject: ..., relation: lives_in, new_object: Oslo}]
    n_random_requests: int = at_least(0, 8)  # edits drawn with `seed`, after `requests`
    n_neighbours: int = positive(10)  # other subjects whose prompts of the relation specificity reads
    steps: int = positive(100)  # Adam steps optimising the value v*
    lr: float = positive(0.5)
    kl_weight: float = at_least(0, 0.0625)  # ROME's KL term, on the subject's other facts
    weight_decay: float = at_least(0, 0.5)  # on ||delta||^2 / ||v||^2
    covariance_ridge: float = at_least(0, 1e-4)  # x the mean eigenvalue, on the key covariance's diagonal
    batch_size_prompts: int = positive(64)  # sequences per forward pass estimating the key covariance
    seed: int = at_least(0, SI("${seed}"))
