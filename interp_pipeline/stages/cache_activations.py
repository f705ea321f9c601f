"""The cache-activations stage: run a model over token sequences and store chosen hooks in Zarr.

Its settings are CacheConfig (interp_pipeline.activations.config); the work, and the checks
of the settings against the model's shape before any of it, are interp_pipeline.activations.caching.
What is stored, and why it survives a kill -9, is in activations/layout.py and writer.py;
reading it back is activations/reader.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.activations.caching import check_cache_settings, check_cache_shapes, store_shape
from interp_pipeline.activations.config import CacheConfig
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@stage("cache_activations", outputs=("store",), config=CacheConfig, preflight=check_cache_settings, version=1,
       check_shapes=check_cache_shapes, shape=store_shape,
       metrics=("tokens_written", "tokens_per_s", "bytes_on_disk", "compression_ratio", "chunks_done"),
       cache=lambda params: params["num_shards"] == 1, key_exclude=("shard_index", "num_shards"), ranks=True,
       summary=("tokens_written", "tokens_per_s", "compression_ratio"))
def cache_activations(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    settings: CacheConfig,
    tracker: Tracker = NULL_TRACKER,
    stage_dir: Path | None = None,
    cache_key: str | None = None,
) -> dict[str, Any]:
    """Store the activations of ``hooks`` at the chosen ``positions`` of ``tokens``.

    ``store`` is a local path or an fsspec URL; by default a directory kept beside
    this stage's cache entry. Running the same config again resumes an interrupted
    store; a store made by another model, hook set or dataset is refused. With
    ``num_shards`` > 1, each process writes its own contiguous run of chunks; under torchrun
    each rank writes shard ``rank`` of ``world_size``.
    Returns {"store_uri", "n_rows", "hooks"}.
    """
    from interp_pipeline.activations.caching import cache_to_store

    return cache_to_store(model, tokens, settings, stage_dir=stage_dir, cache_key=cache_key, tracker=tracker)
