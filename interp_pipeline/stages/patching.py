"""The activation-patching stage: exact grids, their attribution estimates, path patching.

Inputs: a model and a prompt-pairs batch (stages/prompt_pairs.py). Output
``results``: a dict of labelled arrays (patching/labelled.py), one per grid
(``head_out``), per attribution estimate (``head_out.attribution``) and per path
(``path_to_final``). Logged: the clean and corrupted metric values, every
component of the per-head arrays as a metric (``head_out/L9H9``, so ``expect:``
and MLflow's run comparison can name one), the top-k components of every array,
a PNG heatmap per array and one interactive HTML page with all of them.
The work is interp_pipeline.patching.run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.patching.config import PatchingConfig
from interp_pipeline.patching.run import check_inputs, check_settings, metric_names
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.patching.labelled import LabelledArray


@stage("activation_patching", outputs=("results",), config=PatchingConfig, preflight=check_settings,
       check_shapes=check_inputs, metrics=metric_names, version=1, summary=("clean_*", "corrupted_*", "*/top1"))
def activation_patching(model: Any, pairs: Mapping[str, Tensor], settings: PatchingConfig,
                        tracker: Tracker = NULL_TRACKER) -> dict[str, LabelledArray]:
    """Patch clean activations into the corrupted run for each grid (and path); see the module doc."""
    from interp_pipeline.patching.run import patch_pairs

    return patch_pairs(model, pairs, settings, tracker)
