"""The settings of the linear_probe stage and of the label stages: the one source of their defaults.

A label stage's params come through the ``labels`` group (``{fn, params}``, conf/probe_setup/*.yaml)
and are checked against its schema here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, SI

from interp_pipeline.config.fields import at_least, choice, fraction, positive
from interp_pipeline.facts.world import RELATION_NAMES

CONTROLS = ("shuffle", "word_type")  # interp_pipeline.probes.labels.control_labels


@dataclass
class ProbeConfig:
    """Logistic-regression probes on an activation store's hooks (the linear_probe stage; interp_pipeline.probes)."""

    hooks: Optional[List[str]] = None  # None: every hook the store caches
    # Of the labelled sequences, held out whole; below 1 (interp_pipeline.probes.run.check_heldout_fraction).
    heldout_fraction: float = fraction(0.25, open_below=True)
    control: str = choice("shuffle", CONTROLS)  # the control task: labels permuted, or Hewitt & Liang 2019's word_type
    C: float = positive(1.0)  # inverse L2 strength, as scikit-learn's LogisticRegression
    max_iter: int = positive(500)
    tol: float = positive(1e-6)
    # sklearn: rows in memory; torch: streamed from the store; auto: sklearn when they fit in memory_limit_mb.
    backend: str = choice("auto", ("auto", "sklearn", "torch"))
    memory_limit_mb: float = positive(1024.0)  # auto: sklearn when the labelled rows (float64) fit in this
    batch_size_rows: int = positive(4096)  # store rows per read on the streamed path
    seed: int = at_least(0, SI("${seed}"))


@dataclass
class RepeatedHalfLabelsConfig:
    """Which half of an induction probe ([BOS] r r) each position is in (the repeated_half_labels stage)."""

    prepend_bos: bool = True  # the tokens start with BOS (left unlabelled)


@dataclass
class FactLabelsConfig:
    """Every prompt of the toy facts world labelled with an object (the fact_labels stage)."""

    # The facts task's config the model was trained on (model.train.task), so the world is the same.
    task: Dict[str, Any] = MISSING
    position: str = choice("subject_last", ("subject_last", "last"))  # the subject's last token, or the prompt's
    # own: the prompt's own object; a relation (lives_in, ...): the subject's object in it, whatever the prompt asks.
    relation: str = choice("own", ("own", *RELATION_NAMES))
