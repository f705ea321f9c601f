"""The settings of the circuit_discovery stage (interp_pipeline.circuits.run): the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from interp_pipeline.circuits.ablation import ABLATIONS
from interp_pipeline.circuits.circuit import SELECTIONS
from interp_pipeline.circuits.faithfulness import MIB_FRACTIONS
from omegaconf import MISSING

from interp_pipeline.config.fields import at_least, choice, fraction, positive
from interp_pipeline.patching.metrics import METRICS


@dataclass
class CircuitsConfig:
    """Edge scores, circuits and faithfulness curves (the circuit_discovery stage; circuits/run.py)."""

    # Any of (circuits/scoring.py): eap, eap_ig_inputs, eap_ig_activations, clean_corrupted, exact
    # (each edge patched by itself: the ground truth, one pass per edge batch; small models only).
    methods: List[str] = field(default_factory=lambda: ["eap", "eap_ig_inputs"])
    metric: str = choice("logit_diff", METRICS)  # patching/metrics.py; scored raw, faithfulness normalises
    ig_steps: int = positive(5)  # interpolation steps of eap_ig_inputs and eap_ig_activations
    selection: str = choice("top_n", SELECTIONS)  # circuits/circuit.py; curves use top_n under threshold
    n_edges: int = positive(200)  # the circuit drawn and written as JSON (at most the graph's edges)
    threshold: Optional[float] = None  # selection: threshold: edges whose score reaches it
    absolute: bool = True  # rank edges by |score|
    prune: bool = True  # drop edges into nodes with no path to the logits
    ablation: str = choice("corrupted", ABLATIONS)  # what edges outside the circuit carry (circuits/ablation.py)
    fractions: List[float] = field(default_factory=lambda: list(MIB_FRACTIONS))  # the curve's sizes (of all edges)
    target_faithfulness: float = fraction(0.8)  # the smallest circuit reaching it is reported
    top_heads: int = at_least(0, 3)  # heads by |head_out patching| checked against each circuit; 0: none
    batch_size_prompts: int = positive(64)  # sequences in any one forward pass


@dataclass
class GreaterThanConfig:
    """Greater-Than prompt pairs (the greater_than_pairs stage; circuits/greater_than.py, Hanna et al. 2023):
    "The war lasted from the year 17YY to the year 17", corrupted with YY = 01."""

    n_prompts: int = positive(MISSING)
    seed: int = at_least(0, MISSING)
    centuries: List[int] = field(default_factory=lambda: [11, 12, 13, 14, 15, 16, 17])  # the paper's 1100s-1700s
    prepend_bos: bool = True
