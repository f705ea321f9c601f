"""The load_sae stage: a pretrained SAE from SAELens's registry, or one saved on disk.

Its settings are SAESourceConfig (interp_pipeline.sae.config); loading, and the pre-flight
that stops a run which cannot have its SAE before any work, are interp_pipeline.sae.pretrained.

Nothing is stored in the stage cache: the SAE is cheaper to load again from where
it is than to copy, and the stage's cache key (its params) still pins everything
downstream.
"""

from __future__ import annotations

from typing import Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.sae.config import SAESourceConfig
from interp_pipeline.sae.pretrained import check_source, shape_of_source
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker


@stage("load_sae", outputs=("sae",), config=SAESourceConfig, cache=False, preflight=check_source,
       shape=shape_of_source, metrics=("d_in", "d_sae"), version=1, summary=("d_in", "d_sae"))
def load_sae(settings: SAESourceConfig, tracker: Tracker = NULL_TRACKER) -> Any:
    """An inference SAE (``sae_lens.SAE``) from SAELens's registry (``release`` + ``sae_id``) or from a
    directory (``path``); see interp_pipeline.sae.pretrained."""
    from interp_pipeline.sae.pretrained import load

    return load(settings, tracker)
