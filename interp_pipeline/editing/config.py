"""The settings of the rome_edit stage: the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import SI

from interp_pipeline.config.fields import at_least, choice, positive


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


@dataclass
class KeyCovarianceConfig:
    """The MLP keys' uncentred second moment per layer (interp_pipeline.editing.covariance), over a token
    dataset: shared by rome_edit and memit_edit through the stage cache."""

    layers: Optional[List[int]] = None  # the MLPs to read; None: every layer (one pass over the tokens)
    batch_size_prompts: int = positive(64)  # sequences per forward pass


@dataclass
class MemitConfig:
    """MEMIT (Meng et al. 2023; interp_pipeline.editing.memit): a batch of edits over a range of MLP layers,
    and, with ``sizes``, the same edits 1, 8, ... at a time against ROME applied sequentially."""

    # The facts task's config (name: facts, ...), for {subject, relation, new_object} requests and random ones.
    task: Dict[str, Any] = field(default_factory=dict)
    layers: Optional[List[int]] = None  # the MLP range, ascending; None: `window` layers a causal_tracing input picks
    window: int = positive(2)  # consecutive layers taken from tracing: where the MLP's AIE at the last subject token sums highest
    # {subject, relation, new_object} of the facts world, or counterfact-style text:
    # {prompt, subject, new_object, true_object, paraphrases: [...], neighbourhood: [{prompt, object}]}
    requests: List[Any] = field(default_factory=list)
    n_random_requests: int = at_least(0, 8)  # distinct facts drawn with `seed`, after `requests`
    n_neighbours: int = positive(10)  # subjects never edited, whose facts of the relation specificity reads
    sizes: List[int] = field(default_factory=list)  # batch sizes measured (the first N edits); []: all of them
    sequential_rome: bool = False  # also apply ROME one edit after another, at `rome_layer`, for each size
    rome_layer: Optional[int] = at_least(0, None)  # None: the layer tracing picks, else the range's last
    # edited: each ROME value optimised on the model edited so far (the paper's baseline); original: all
    # values optimised at once on the unedited model, then applied one after another (cheaper)
    rome_values: str = choice("edited", ("edited", "original"))
    steps: int = positive(50)  # Adam steps optimising each target (the deltas of a batch at once)
    lr: float = positive(0.5)
    kl_weight: float = at_least(0, 0.0625)
    weight_decay: float = at_least(0, 0.5)
    mom2_update_weight: float = at_least(0, 15000.0)  # lambda: the stored keys' weight against the new ones
    covariance_ridge: float = at_least(0, 1e-4)  # x the mean eigenvalue, on each C's diagonal
    seed: int = at_least(0, SI("${seed}"))
