"""The attribution_graph stage: circuit-tracer's attribution graphs with our transcoders
(interp_pipeline.transcoders.tracing): per prompt the graph, pruned, its scores, circuit-tracer's
JSON and one page of graphs with each kept feature's top contexts from the activation store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.transcoders.config import AttributionConfig
from interp_pipeline.transcoders.tracing import check_attribution_shapes


@stage("attribution_graph", outputs=("graphs",), config=AttributionConfig, check_shapes=check_attribution_shapes,
       version=1, metrics=("mean/*", "max/*", "min/*", "prompts", "prompt_*/*"),
       summary=("mean/pruned_replacement_score", "mean/completeness_score", "max/logit_max_abs_error"))
def attribution_graph(model: Any, transcoders: Any, facts: Any = None, store: Any = None, *,
                      settings: AttributionConfig, tracker: Tracker = NULL_TRACKER,
                      stage_dir: Path | None = None) -> dict[str, Any]:
    """Attribution graphs for the prompts (``facts``' first ``max_prompts``, or ``prompts``)."""
    from interp_pipeline.transcoders.tracing import trace_graphs

    return trace_graphs(model, transcoders, settings, facts=facts, store=store, tracker=tracker, stage_dir=stage_dir)
