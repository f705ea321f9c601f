"""The circuit_discovery stage: edge attribution patching (EAP, EAP-IG), circuits, faithfulness curves.

Inputs: a model and a prompt-pairs batch (stages/prompt_pairs.py, the IOI or Greater-Than pairs).
Output ``scores``: one [n_senders, n_receivers] tensor per method (circuits/graph.py numbers the
nodes) and the graph's ``valid`` edge mask. Logged per method: CPR and CMD (MIB 2025), the
faithfulness of each curve size (step: edges kept), the smallest circuit reaching
``target_faithfulness``, the circuit of ``n_edges`` (faithfulness, JSON, graph figure), its agreement
with exact head patching (``top_heads_in_circuit``) and, with ``exact`` among the methods, each
estimate's correlation with it; a figure of the curves and one page (circuits.html).
The work is interp_pipeline.circuits.run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits import greater_than
from interp_pipeline.circuits.config import CircuitsConfig, GreaterThanConfig
from interp_pipeline.circuits.run import check_inputs, check_settings, metric_names
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


@stage("circuit_discovery", outputs=("scores",), config=CircuitsConfig, preflight=check_settings,
       check_shapes=check_inputs, metrics=metric_names, version=1, summary=("*/cpr", "*/smallest_fraction"))
def circuit_discovery(model: Any, pairs: Mapping[str, Tensor], settings: CircuitsConfig,
                      tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Score every edge by each method, and find and evaluate circuits; see the module doc."""
    from interp_pipeline.circuits.run import discover

    return discover(model, pairs, settings, tracker)


@stage("greater_than_pairs", outputs=("pairs",), config=GreaterThanConfig, preflight=greater_than.check_settings,
       check_shapes=greater_than.check_inputs, shape=greater_than.pairs_shape, metrics=("pairs_kept",))
def greater_than_pairs(model: Any, settings: GreaterThanConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Greater-Than prompt pairs for the ``prob_diff`` metric (Hanna et al. 2023): clean "... the year 17YY to
    the year 17", corrupted with YY = 01; refused before any work unless the model's tokenizer splits the
    years as GPT-2's does. (A circuits stage: the pairs exist for this task's circuit.)"""
    pairs = greater_than.greater_than_pairs(model, settings)
    tracker.log_metrics({"pairs_kept": len(pairs["clean"])})
    return pairs
