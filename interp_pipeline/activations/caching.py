"""Caching a model's activations into a Zarr store: plan the rows, create or resume the store, write chunks.

What is stored, and why it survives a kill -9, is in layout.py and writer.py; reading it
back is reader.py. The cache_activations stage declares this as a pipeline stage; its
settings are CacheConfig (interp_pipeline.activations.config), and what their ranges and
choices cannot say (a position option, the shard, a store URL) is checked here, before any work.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.activations.config import CacheConfig
from interp_pipeline.activations.layout import (
    DTYPES,
    fingerprint,
    missing_shards_text,
    parse_positions,
    plan_rows,
    selected_positions,
    shard_chunks,
    store_attributes,
)
from interp_pipeline.activations.model_forward import (
    hook_activations,
    hook_row_shapes,
    stop_at_layer_for,
    weights_fingerprint,
)
from interp_pipeline.common.distributed import SINGLE, Ranks, current, world_size_from_env
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.progress import progress
from interp_pipeline.pipeline.shapes import StoreShape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class WrittenStore:
    n_rows: int  # rows the whole store holds (every shard's)
    complete: bool  # every chunk written, by this process or another shard
    metrics: dict[str, float]


def check_cache_settings(settings: CacheConfig) -> None:
    """What CacheConfig's ranges and choices cannot say: a position option, a hook, the shard, the store's URL."""
    try:
        parse_positions(settings.positions)
    except ValueError as error:
        raise ConfigError("positions", str(error)) from None
    if not settings.hooks:
        raise ConfigError("hooks", "expected at least one hook name, found none")
    if settings.shard_index >= settings.num_shards:
        raise ConfigError("shard_index", f"expected 0 <= shard_index < num_shards, found "
                                         f"{settings.shard_index} of {settings.num_shards}")
    _check_store_url(settings.store)


def _check_store_url(store: str | None) -> None:
    """A URL's filesystem must be importable here (s3fs for s3://), or the run would fail after the model."""
    if store is None or "://" not in str(store):
        return
    import fsspec

    protocol = str(store).split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as error:
        extra = "; pip install 'interp_pipeline[s3]'" if protocol in ("s3", "s3a") else ""
        raise ConfigError("store", f"expected a path or a URL fsspec can open, found '{store}' "
                                   f"({str(error).splitlines()[0]}){extra}") from None
    from interp_pipeline.storage.object_stores import check_object_store

    check_object_store(str(store))  # endpoint, bucket, credentials: before the model is loaded


def check_cache_shapes(settings: CacheConfig, inputs: Mapping[str, Any]) -> None:
    """Every hook is one the model calls, with a token axis; the sequences fit its context."""
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is None:
        return
    for index, hook in enumerate(settings.hooks):
        model.token_width(f"hooks[{index}]", hook)
    if tokens is not None and tokens.seq_len is not None:
        model.check_fits_context("inputs.tokens", tokens.seq_len)
    world = world_size_from_env()
    if world > 1 and settings.num_shards == 1 and tokens is not None and tokens.n_sequences is not None \
            and tokens.n_sequences < world:
        raise ConfigError("inputs.tokens", f"expected at least one sequence per rank ({world} ranks write one "
                                           f"shard each), found {tokens.n_sequences}; start fewer ranks")


def store_shape(settings: CacheConfig, inputs: Mapping[str, Any]) -> StoreShape | None:
    """The hooks' widths, and at most how many rows the store gets (padding may be left out), from shapes alone."""
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is None:
        return None
    hooks = {hook: tuple(model.token_width("hooks", hook)) for hook in settings.hooks}
    max_rows = None
    if tokens is not None and tokens.n_sequences is not None and tokens.seq_len is not None:
        one_row = np.zeros((1, tokens.seq_len), dtype=np.int64)
        per_sequence = len(selected_positions(one_row, settings.positions, None)[0])
        max_rows = tokens.n_sequences * per_sequence
        if settings.max_tokens is not None:
            max_rows = min(max_rows, settings.max_tokens)
    shards = settings.num_shards
    return StoreShape(hooks, max_rows, (settings.shard_index, shards) if shards > 1 else None,
                      n_sequences=getattr(tokens, "n_sequences", None), seq_len=getattr(tokens, "seq_len", None))


def cache_to_store(model: Any, tokens: Tensor, settings: CacheConfig, *, stage_dir: Path | None = None,
                   cache_key: str | None = None, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """The cache_activations stage's work: write (or resume) the store, log its metrics, return what names it.

    The store is ``settings.store``, or a directory ``activations.zarr`` in ``stage_dir``.
    """
    check_cache_settings(settings)  # called from a notebook, the runner's pre-flight has not run
    url = settings.store or str(Path(stage_dir or ".") / "activations.zarr")
    tracker.set_tags({"store_uri": url})
    ranks = current()
    if ranks.spread and settings.num_shards == 1:
        # torchrun: rank r writes shard r of world_size; the store is one process's, chunk for chunk.
        settings = dataclasses.replace(settings, shard_index=ranks.rank, num_shards=ranks.world_size)
    written = write_store(model, tokens, url, settings, cache_key=cache_key, ranks=ranks)
    tracker.log_metrics(written.metrics)
    return {"store_uri": url, "n_rows": written.n_rows, "hooks": list(settings.hooks), "complete": written.complete}


def _stored(values: Tensor, dtype: str) -> np.ndarray:
    import torch

    if dtype == "bfloat16":  # numpy has no bfloat16: store the raw bits
        return values.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return values.to(getattr(torch, dtype)).cpu().numpy()


def write_store(model: Any, tokens: Tensor, url: str, settings: CacheConfig, *,
                cache_key: str | None = None, ranks: Ranks = SINGLE) -> WrittenStore:
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
    from interp_pipeline.storage.cache_keys import library_versions

    hooks, dtype, chunk_rows, positions = list(settings.hooks), settings.dtype, settings.chunk_rows, settings.positions
    shard_index, num_shards = settings.shard_index, settings.num_shards

    try:
        ensure_writable(url)
    except PermissionError as error:
        raise ConfigError("store", f"expected a writable location, {error}") from None
    tokens_np = tokens.cpu().numpy()
    # Padding (for positions last / non_padding): the model tokenizer's, unless given.
    pad = settings.pad_token_id
    if pad is None:
        pad = getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    plan = plan_rows(tokens_np, positions, pad, settings.max_tokens, settings.batch_size_prompts)
    if plan.n_rows == 0:
        raise ConfigError("positions", "selects no token of the dataset")
    identity = weights_fingerprint(model)
    attributes = store_attributes(
        model=identity, hooks=hooks, row_shape=hook_row_shapes(model, tokens, hooks), dtype=dtype,
        positions=positions, dataset_fingerprint=fingerprint(tokens_np), n_rows=plan.n_rows,
        chunk_rows=chunk_rows, batch_size=settings.batch_size_prompts, versions=library_versions(),
    )
    attributes["cache_key"] = cache_key  # recorded, not compared: shards and reruns share it anyway
    attributes["num_shards"] = num_shards  # the creator's, for readers to name unfinished shards; not compared
    try:
        group = open_or_create(url, attributes, settings.compression, settings.compression_level, shard_index)
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
    if ranks.spread:  # the other ranks' shards too: then the store is complete for every rank
        written = sum(ranks.gather(written))
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
