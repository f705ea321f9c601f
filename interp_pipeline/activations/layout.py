"""The activation store's layout (version 2) and the plan of which token goes to which row.

A store is a Zarr v3 group: ``activations/<hook>`` arrays of shape [rows, *row_shape]
(rows are tokens), ``token_ids``, ``sequence`` and ``position`` beside them, a
``chunk_done`` flag per row chunk, and attributes that describe it (see
:func:`store_attributes`). interp_pipeline.activations.reader reads it.

Version 2 added a CRC32C checksum to every chunk of every array (and writes chunks
of zeros too, so a missing chunk is noticed); version 1 stores are not read.

The plan is a pure function of the tokens, the position option, the token budget
and the batch size, so a resumed or sharded run recomputes exactly the rows it
lacks, from the same batches, and writes the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

LAYOUT_VERSION = 2
LAYOUT_ATTR = "interp_pipeline_layout"
DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}  # logical -> stored (raw bits)
POSITION_OPTIONS = ("all", "last", "drop_bos", "non_padding", "START:STOP")
_SLICE = re.compile(r"^(-?\d*):(-?\d*)$")


def parse_positions(option: str) -> Any:
    """Validate a position option; returns it, or a ``slice`` for "START:STOP"."""
    if option in ("all", "last", "drop_bos", "non_padding"):
        return option
    match = _SLICE.match(option)
    if match:
        start, stop = (int(x) if x else None for x in match.groups())
        return slice(start, stop)
    raise ValueError(f"expected one of {', '.join(POSITION_OPTIONS)}, found '{option}'")


def selected_positions(tokens: np.ndarray, option: str, pad_token_id: int | None) -> list[np.ndarray]:
    """For each sequence, the positions whose activations are stored (in order)."""
    parsed = parse_positions(option)
    n_seq, seq_len = tokens.shape
    everywhere = np.arange(seq_len)
    if isinstance(parsed, slice):
        return [everywhere[parsed] for _ in range(n_seq)]
    if parsed == "all":
        return [everywhere for _ in range(n_seq)]
    if parsed == "drop_bos":
        return [everywhere[1:] for _ in range(n_seq)]
    # Padding is on the right: a run of pad tokens at the end (position 0 is BOS, which
    # may share its id with the pad token, so it always counts as real).
    lengths = []
    for row in tokens:
        length = seq_len
        if pad_token_id is not None:
            while length > 1 and row[length - 1] == pad_token_id:
                length -= 1
        lengths.append(length)
    if parsed == "last":
        return [np.array([length - 1]) for length in lengths]
    return [everywhere[:length] for length in lengths]


@dataclass(frozen=True)
class RowPlan:
    """Which (sequence, position) each row holds, and which rows each batch of sequences yields."""

    sequence: np.ndarray  # [n_rows] int32
    position: np.ndarray  # [n_rows] int32
    batch_rows: list[tuple[int, int]]  # per batch of sequences: its [start, stop) rows
    batch_size: int

    @property
    def n_rows(self) -> int:
        return len(self.sequence)


def plan_rows(tokens: np.ndarray, option: str, pad_token_id: int | None, max_tokens: int | None,
              batch_size: int) -> RowPlan:
    per_sequence = selected_positions(tokens, option, pad_token_id)
    sequence = np.concatenate([np.full(len(p), i, dtype=np.int32) for i, p in enumerate(per_sequence)])
    position = np.concatenate(per_sequence).astype(np.int32)
    if max_tokens is not None:
        sequence, position = sequence[:max_tokens], position[:max_tokens]
    counts = np.bincount(sequence, minlength=len(tokens)) if len(sequence) else np.zeros(len(tokens), int)
    starts = np.concatenate([[0], np.cumsum(counts)])
    batch_rows = []
    for first in range(0, len(tokens), batch_size):
        last = min(first + batch_size, len(tokens))
        if starts[first] == starts[last]:
            break  # the budget ended before this batch
        batch_rows.append((int(starts[first]), int(starts[last])))
    return RowPlan(sequence, position, batch_rows, batch_size)


def chunk_range(chunk: int, chunk_rows: int, n_rows: int) -> tuple[int, int]:
    return chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_rows)


def shard_chunks(n_chunks: int, shard_index: int, num_shards: int) -> range:
    """Shard ``shard_index``'s contiguous run of chunks (chunk-aligned, disjoint, covering all)."""
    start = n_chunks * shard_index // num_shards
    return range(start, n_chunks * (shard_index + 1) // num_shards)


def unfinished_shards(done: np.ndarray, num_shards: int) -> list[int]:
    """The shards (of ``num_shards``, as :func:`shard_chunks` divides them) with a chunk not yet done."""
    n_chunks = len(done)
    return [i for i in range(num_shards) if not all(done[c] for c in shard_chunks(n_chunks, i, num_shards))]


def missing_shards_text(done: np.ndarray, num_shards: int) -> str:
    """What a reader of an unfinished sharded store is told: which shards, and how to write them."""
    shards = unfinished_shards(done, num_shards)
    listed = ",".join(str(i) for i in shards)
    return (f"shard{'s' if len(shards) > 1 else ''} {listed} of {num_shards} not finished "
            f"(write {'them' if len(shards) > 1 else 'it'} with cache.shard_index={listed} "
            f"cache.num_shards={num_shards}, or wait for the jobs writing {'them' if len(shards) > 1 else 'it'})")


def fingerprint(tokens: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int64).tobytes())
    digest.update(str(tokens.shape).encode())
    return digest.hexdigest()[:16]


# The attributes that must match for a run to continue an existing store.
IDENTITY_KEYS = (LAYOUT_ATTR, "model", "hooks", "row_shape", "dtype", "positions", "dataset_fingerprint", "n_rows",
                 "chunk_rows", "batch_size")


def store_attributes(*, model: dict[str, Any], hooks: list[str], row_shape: dict[str, list[int]], dtype: str,
                     positions: str, dataset_fingerprint: str, n_rows: int, chunk_rows: int, batch_size: int,
                     versions: dict[str, str]) -> dict[str, Any]:
    return {
        LAYOUT_ATTR: LAYOUT_VERSION,
        "complete": False,
        "model": model,
        "hooks": list(hooks),
        "row_shape": row_shape,
        "dtype": dtype,
        "positions": positions,
        "dataset_fingerprint": dataset_fingerprint,
        "n_rows": n_rows,
        "chunk_rows": chunk_rows,
        "n_chunks": -(-n_rows // chunk_rows),
        "batch_size": batch_size,
        "versions": versions,
    }


def differences(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [key for key in IDENTITY_KEYS if existing.get(key) != wanted.get(key)]
