"""The cache-activations stage: run a model over token sequences and store chosen hooks in Zarr.

What is stored, and why it survives a kill -9, is in interp_pipeline.activations
(layout and writer); reading it back is interp_pipeline.activations.reader.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.activations.layout import (
    DTYPES,
    fingerprint,
    parse_positions,
    plan_rows,
    selected_positions,
    shard_chunks,
    store_attributes,
)
from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.progress import progress
from interp_pipeline.shapes import StoreShape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.")
COMPRESSIONS = ("zstd", "blosc", "none")


def _check_params(params: dict[str, Any]) -> None:
    try:
        parse_positions(str(params.get("positions", "all")))
    except ValueError as error:
        raise ConfigError("positions", str(error)) from None
    if params.get("dtype", "float32") not in DTYPES:
        raise ConfigError("dtype", f"expected one of {one_of(DTYPES)}, found '{params.get('dtype')}'",
                          suggestion=did_you_mean(str(params.get("dtype")), DTYPES))
    if params.get("compression", "zstd") not in COMPRESSIONS:
        raise ConfigError("compression", f"expected one of {one_of(COMPRESSIONS)}, found '{params.get('compression')}'")
    if not params.get("hooks"):
        raise ConfigError("hooks", "expected at least one hook name, found none")
    shards = params.get("num_shards", 1)
    if not (isinstance(shards, int) and shards >= 1 and 0 <= params.get("shard_index", 0) < shards):
        raise ConfigError("shard_index", f"expected 0 <= shard_index < num_shards, found "
                                         f"{params.get('shard_index')} of {shards}")
    for key in ("batch_size", "chunk_rows"):
        if not (isinstance(params.get(key, 1), int) and params.get(key, 1) >= 1):
            raise ConfigError(key, f"expected a positive integer, found {params.get(key)!r}")


def hook_row_shapes(model: Any, tokens: Tensor, hooks: list[str]) -> dict[str, list[int]]:
    """Each hook's per-token shape, from a 3-token forward; refuses hooks with no token axis."""
    for hook in hooks:
        if hook not in model.hook_dict:
            raise ConfigError("hooks", f"expected a hook name of this model, found '{hook}'",
                              suggestion=did_you_mean(hook, model.hook_dict))
    probe = tokens[:1, :3].to(model.cfg.device)
    _, cache = model.run_with_cache(probe, names_filter=hooks)
    shapes = {}
    for hook in hooks:
        shape = tuple(cache[hook].shape)
        if len(shape) < 3 or shape[1] != probe.shape[1]:
            raise ConfigError("hooks", f"expected a hook with one activation per token, found '{hook}' "
                                       f"of shape {shape} (attention patterns are per query and key)")
        shapes[hook] = list(shape[2:])
    return shapes


def stop_at_layer_for(model: Any, hooks: list[str]) -> int | None:
    """Run only the blocks the hooks need (HookedTransformer's stop_at_layer)."""
    from transformer_lens import HookedTransformer

    layers = [_BLOCK_HOOK.match(h) for h in hooks]
    if not isinstance(model, HookedTransformer) or not all(layers):
        return None
    deepest = max(int(m.group(1)) for m in layers)
    return deepest + 1 if deepest + 1 < model.cfg.n_layers else None


def weights_fingerprint(model: Any) -> dict[str, Any]:
    """Which weights made a store, cheaply: per tensor its name, shape, dtype, sum and first values.

    Hashing every byte of GPT-2 small takes seconds; a different model, checkpoint or
    fine-tune still changes the sums (the full checksum is on the model stage's run).
    """
    import hashlib

    import torch

    digest = hashlib.sha256()
    n_values = 0  # parameters and buffers
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            n_values += flat.numel()
            head = flat[:64].float().cpu().numpy().tobytes()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{flat.double().sum().item():.17g}".encode())
            digest.update(head)
    return {"n_values": n_values, "weights_fingerprint": digest.hexdigest()[:16]}


def _stored(values: Tensor, dtype: str) -> np.ndarray:
    import torch

    if dtype == "bfloat16":  # numpy has no bfloat16: store the raw bits
        return values.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return values.to(getattr(torch, dtype)).cpu().numpy()


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is None:
        return
    for index, hook in enumerate(params["hooks"]):
        model.token_width(f"hooks[{index}]", hook)
    if tokens is not None and tokens.seq_len is not None:
        model.check_fits_context("inputs.tokens", tokens.seq_len)


def _shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> StoreShape | None:
    """The hooks' widths, and at most how many rows the store gets (padding may be left out)."""
    model, tokens = inputs.get("model"), inputs.get("tokens")
    if model is None:
        return None
    hooks = {hook: tuple(model.token_width("hooks", hook)) for hook in params["hooks"]}
    max_rows = None
    if tokens is not None and tokens.n_sequences is not None and tokens.seq_len is not None:
        one_row = np.zeros((1, tokens.seq_len), dtype=np.int64)
        per_sequence = len(selected_positions(one_row, str(params.get("positions", "all")), None)[0])
        max_rows = tokens.n_sequences * per_sequence
        if params.get("max_tokens") is not None:
            max_rows = min(max_rows, int(params["max_tokens"]))
    return StoreShape(hooks, max_rows)


@stage("cache_activations", outputs=("store",), preflight=_check_params, version=1, check_shapes=_check_shapes,
       shape=_shape, metrics=("tokens_written", "tokens_per_s", "bytes_on_disk", "compression_ratio", "chunks_done"),
       cache=lambda params: params.get("num_shards", 1) == 1, key_exclude=("shard_index", "num_shards"),
       summary=("tokens_written", "tokens_per_s", "compression_ratio"))
def cache_activations(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    hooks: list[str],
    positions: str = "all",
    batch_size: int = 8,
    dtype: str = "float32",
    chunk_rows: int = 4096,
    compression: str = "zstd",
    compression_level: int = 3,
    max_tokens: int | None = None,
    store: str | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    pad_token_id: int | None = None,
    tracker: Tracker = NULL_TRACKER,
    stage_dir: Path | None = None,
    cache_key: str | None = None,
) -> dict[str, Any]:
    """Store the activations of ``hooks`` at the chosen ``positions`` of ``tokens``.

    ``store`` is a local path or an fsspec URL; by default a directory kept beside
    this stage's cache entry. Running the same config again resumes an interrupted
    store; a store made by another model, hook set or dataset is refused. With
    ``num_shards`` > 1, each process writes its own contiguous run of chunks.
    Returns {"store_uri", "n_rows", "hooks"}.
    """
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

    url = store or str(Path(stage_dir or ".") / "activations.zarr")
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
    try:
        group = open_or_create(url, attributes, compression, compression_level)
    except StoreMismatch as error:
        raise ConfigError("store", f"{error}; delete it or choose another cache.store") from None
    token_ids = tokens_np[plan.sequence, plan.position].astype(np.int32)
    mine = shard_chunks(attributes["n_chunks"], shard_index, num_shards)
    done = done_chunks(group)
    todo = [c for c in mine if not done[c]]
    tracker.set_tags({"store_uri": url})

    stop = stop_at_layer_for(model, hooks)
    bar = progress(range(0), desc="caching", total=sum(min(chunk_rows, plan.n_rows - c * chunk_rows) for c in todo),
                   unit="tok", unit_scale=True)

    def activations_of_batch(batch: int) -> dict[str, np.ndarray]:
        r0, r1 = plan.batch_rows[batch]
        first = batch * plan.batch_size
        seqs = torch.as_tensor(plan.sequence[r0:r1] - first, dtype=torch.long)
        pos = torch.as_tensor(plan.position[r0:r1], dtype=torch.long)
        batch_tokens = tokens[first:first + plan.batch_size].to(model.cfg.device)
        kwargs = {"stop_at_layer": stop} if stop is not None else {}
        with torch.inference_mode():
            _, cache = model.run_with_cache(batch_tokens, names_filter=hooks, **kwargs)
        return {h: _stored(cache[h][seqs.to(cache[h].device), pos.to(cache[h].device)], dtype) for h in hooks}

    started = time.perf_counter()
    written = write_chunks(group, plan, token_ids, todo, activations_of_batch, on_rows=bar.update)
    elapsed = time.perf_counter() - started
    bar.close()
    complete = mark_complete_if_done(group)
    on_disk = store_bytes(url)
    uncompressed = plan.n_rows * (12 + sum(int(np.prod(s)) * np.dtype(DTYPES[dtype]).itemsize
                                           for s in attributes["row_shape"].values()))
    tracker.log_metrics({
        "tokens_written": float(written),
        "tokens_per_s": written / elapsed if elapsed > 0 else 0.0,
        "bytes_on_disk": float(on_disk),
        "compression_ratio": uncompressed / on_disk if on_disk and complete else 0.0,
        "chunks_done": float(done_chunks(group).sum()),
    })
    return {"store_uri": url, "n_rows": plan.n_rows, "hooks": list(hooks), "complete": complete}
