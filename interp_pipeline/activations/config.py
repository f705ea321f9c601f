"""The settings of the cache_activations stage (the ``cache`` and ``sae_cache`` groups): the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from interp_pipeline.config.fields import at_least, choice, positive

COMPRESSIONS = ("zstd", "blosc", "none")


@dataclass
class CacheConfig:
    """Caching activations to a Zarr v3 store (the cache_activations stage, interp_pipeline.activations.caching).

    What is stored, and why it survives a kill -9, is in activations/layout.py and writer.py.
    """

    hooks: List[str] = field(default_factory=lambda: ["blocks.0.hook_resid_post"])
    positions: str = "all"  # all, last, drop_bos, non_padding, or START:STOP
    batch_size_prompts: int = positive(8)  # sequences per forward pass
    # as activations/layout.py's DTYPES stores them (bfloat16 as its raw bits)
    dtype: str = choice("float32", ("float32", "float16", "bfloat16"))
    chunk_rows: int = positive(4096)  # rows (tokens) per stored chunk
    compression: str = choice("zstd", COMPRESSIONS)
    compression_level: int = at_least(0, 3)
    max_tokens: Optional[int] = positive(None)  # token budget (rows stored)
    store: Optional[str] = None  # local path or fsspec URL; default: beside the stage's cache entry
    shard_index: int = at_least(0, 0)  # this process's shard of num_shards, each a contiguous run of chunks
    num_shards: int = positive(1)
    pad_token_id: Optional[int] = None  # default: the model tokenizer's
