"""Caching a model's activations into a Zarr store: plan the rows, create or resume the store, write chunks.

What is stored, and why it survives a kill -9, is in layout.py and writer.py; reading it
back is reader.py. The cache_activations stage (interp_pipeline.stages.cache_activations)
declares this as a pipeline stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.activations.layout import (
    DTYPES,
    fingerprint,
    missing_shards_text,
    plan_rows,
    shard_chunks,
    store_attributes,
)
from interp_pipeline.activations.model_forward import (
    hook_activations,
    hook_row_shapes,
    stop_at_layer_for,
    weights_fingerprint,
)
from interp_pipeline.errors import ConfigError
from interp_pipeline.progress import progress

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class WrittenStore:
    n_rows: int  # rows the whole store holds (every shard's)
    complete: bool  # every chunk written, by this process or another shard
    metrics: dict[str, float]


def _stored(values: Tensor, dtype: str) -> np.ndarray:
    import torch

    if dtype == "bfloat16":  # numpy has no bfloat16: store the raw bits
        return values.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return values.to(getattr(torch, dtype)).cpu().numpy()


def write_store(model: Any, tokens: Tensor, url: str, hooks: list[str], *, positions: str = "all",
                batch_size: int = 8, dtype: str = "float32", chunk_rows: int = 4096, compression: str = "zstd",
                compression_level: int = 3, max_tokens: int | None = None, shard_index: int = 0,
                num_shards: int = 1, pad_token_id: int | None = None, cache_key: str | None = None) -> WrittenStore:
    """Write (or resume) this shard's chunks of the store at ``url``; see the stage's docstring for the options."""
    import torch

    from interp_pipeline.activations.writer import (
        StoreMismatch,
        done_chunks,
        ensure_writable,
        mark_complete_if_done,
        open_or_create,
        store_bytes,
        write_chunks,
    )
    from interp_pipeline.runner.cache_keys import library_versions

    try:
        ensure_writable(url)
    except PermissionError as error:
        raise ConfigError("store", f"expected a writable location, {error}") from None
    tokens_np = tokens.cpu().numpy()
    # Padding (for positions last / non_padding): the model tokenizer's, unless given.
    pad = pad_token_id if pad_token_id is not None else getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    plan = plan_rows(tokens_np, positions, pad, max_tokens, batch_size)
    if plan.n_rows == 0:
        raise ConfigError("positions", "selects no token of the dataset")
    identity = weights_fingerprint(model)
    attributes = store_attributes(
        model=identity, hooks=hooks, row_shape=hook_row_shapes(model, tokens, hooks), dtype=dtype,
        positions=positions, dataset_fingerprint=fingerprint(tokens_np), n_rows=plan.n_rows,
        chunk_rows=chunk_rows, batch_size=batch_size, versions=library_versions(),
    )
    attributes["cache_key"] = cache_key  # recorded, not compared: shards and reruns share it anyway
    attributes["num_shards"] = num_shards  # the creator's, for readers to name unfinished shards; not compared
    try:
        group = open_or_create(url, attributes, compression, compression_level, shard_index)
    except StoreMismatch as error:
        raise ConfigError("store", f"{error}; delete it or choose another cache.store") from None
    token_ids = tokens_np[plan.sequence, plan.position].astype(np.int32)
    mine = shard_chunks(attributes["n_chunks"], shard_index, num_shards)
    done = done_chunks(group)
    created_shards = int(group.attrs.get("num_shards", 1))
    if num_shards == 1 and created_shards > 1 and not done.all():
        # One process would otherwise quietly compute every other shard's share itself.
        raise ConfigError("num_shards", f"the store at {url} is written in shards: "
                                        f"{missing_shards_text(done, created_shards)}")
    todo = [c for c in mine if not done[c]]

    stop = stop_at_layer_for(model, hooks)
    bar = progress(range(0), desc="caching", total=sum(min(chunk_rows, plan.n_rows - c * chunk_rows) for c in todo),
                   unit="tok", unit_scale=True)

    def activations_of_batch(batch: int) -> dict[str, np.ndarray]:
        r0, r1 = plan.batch_rows[batch]
        first = batch * plan.batch_size
        seqs = torch.as_tensor(plan.sequence[r0:r1] - first, dtype=torch.long)
        pos = torch.as_tensor(plan.position[r0:r1], dtype=torch.long)
        cache = hook_activations(model, tokens[first:first + plan.batch_size], hooks, stop)
        # [batch, pos, *row] -> [rows, *row]: the planned (sequence, position) pairs of this batch
        return {h: _stored(cache[h][seqs.to(cache[h].device), pos.to(cache[h].device)], dtype) for h in hooks}

    started = time.perf_counter()
    written = write_chunks(group, plan, token_ids, todo, activations_of_batch, on_rows=bar.update)
    elapsed = time.perf_counter() - started
    bar.close()
    complete = mark_complete_if_done(group)
    on_disk = store_bytes(url)
    uncompressed = plan.n_rows * (12 + sum(int(np.prod(s)) * np.dtype(DTYPES[dtype]).itemsize
                                           for s in attributes["row_shape"].values()))
    metrics = {
        "tokens_written": float(written),
        "tokens_per_s": written / elapsed if elapsed > 0 else 0.0,
        "bytes_on_disk": float(on_disk),
        "compression_ratio": uncompressed / on_disk if on_disk and complete else 0.0,
        "chunks_done": float(done_chunks(group).sum()),
    }
    return WrittenStore(plan.n_rows, complete, metrics)
