"""The cache-activations stage: run a model over token sequences and store chosen hooks in Zarr.

The stage checks its params (before any work, against the model's shape) and delegates
to interp_pipeline.activations.caching; what is stored, and why it survives a kill -9,
is in activations/layout.py and writer.py; reading it back is activations/reader.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.activations.layout import DTYPES, parse_positions, selected_positions
from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.shapes import StoreShape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

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
    _check_store_url(params.get("store"))
    for key in ("batch_size", "chunk_rows"):
        if not (isinstance(params.get(key, 1), int) and params.get(key, 1) >= 1):
            raise ConfigError(key, f"expected a positive integer, found {params.get(key)!r}")


def _check_store_url(store: Any) -> None:
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
    shards = int(params.get("num_shards", 1))
    return StoreShape(hooks, max_rows, (int(params.get("shard_index", 0)), shards) if shards > 1 else None,
                      n_sequences=getattr(tokens, "n_sequences", None), seq_len=getattr(tokens, "seq_len", None))


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
    from interp_pipeline.activations.caching import write_store

    url = store or str(Path(stage_dir or ".") / "activations.zarr")
    tracker.set_tags({"store_uri": url})
    written = write_store(model, tokens, url, hooks, positions=positions, batch_size=batch_size, dtype=dtype,
                          chunk_rows=chunk_rows, compression=compression, compression_level=compression_level,
                          max_tokens=max_tokens, shard_index=shard_index, num_shards=num_shards,
                          pad_token_id=pad_token_id, cache_key=cache_key)
    tracker.log_metrics(written.metrics)
    return {"store_uri": url, "n_rows": written.n_rows, "hooks": list(hooks), "complete": written.complete}
