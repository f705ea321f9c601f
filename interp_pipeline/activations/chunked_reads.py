"""Reading an activation store by whole chunks: rows in any order, and shuffled batches.

Kept apart from reader.py (the store's API) because this is the part with the
invariants: each needed chunk is read once, and every row comes exactly once per
epoch whatever the batch size and buffer size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from interp_pipeline.activations.checksums import checked
from interp_pipeline.activations.layout import chunk_range

if TYPE_CHECKING:
    import zarr


def read_rows(arr: zarr.Array, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``arr`` in that order, reading each needed chunk once.

    A chunk that fails its checksum raises CorruptChunkError naming the array and chunk.
    """
    if index.size == 0:
        return np.empty((0, *arr.shape[1:]), arr.dtype)
    if np.all(np.diff(index) == 1):
        start, stop = int(index[0]), int(index[-1]) + 1
        return checked(arr, (start, stop), lambda: arr[start:stop])
    # zarr's orthogonal indexing fetches the chunks concurrently; ask it for sorted,
    # unique rows (cheapest for it) and put them in the caller's order here.
    unique, inverse = np.unique(index, return_inverse=True)
    raw = checked(arr, unique, lambda: arr.oindex[unique])
    return raw if unique.size == index.size and np.array_equal(unique, index) else raw[inverse]


def chunk_row_indices(chunks: np.ndarray, chunk_rows: int, n_rows: int) -> np.ndarray:
    if chunks.size == 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.arange(*chunk_range(int(c), chunk_rows, n_rows), dtype=np.int64) for c in chunks])


def shuffled_batches(arr: zarr.Array, n_rows: int, chunk_rows: int, batch_size: int, *, seed: int,
                     epochs: range, shuffle: bool, buffer_chunks: int, drop_last: bool,
                     part: int = 0, n_parts: int = 1, skip: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(raw rows, row indices)`` batches; see ActivationStore.iter_batches for the contract.

    ``skip``: leave out the first batches of the first epoch (a resumed reader's position),
    yielding what follows exactly as an unbroken pass would. The order depends only on the
    row counts, so buffers whose batches are all skipped are never read.
    """
    n_chunks = -(-n_rows // chunk_rows)
    for epoch in epochs:
        # Every part (DataLoader worker) draws the same chunk order, then takes its
        # share, so the parts cover each chunk exactly once between them.
        order = np.random.default_rng([seed, epoch]).permutation(n_chunks) if shuffle else np.arange(n_chunks)
        order = order[part::n_parts]
        row_rng = np.random.default_rng([seed, epoch, part, n_parts])
        carry_raw: np.ndarray | None = np.empty((0, *arr.shape[1:]), arr.dtype)
        carry_rows = np.empty(0, np.int64)
        for b in range(0, len(order), buffer_chunks):
            chunks = order[b:b + buffer_chunks]
            # Read the buffer's chunks in store order (sequential for local disks,
            # one concurrent zarr request for object stores), shuffle afterwards.
            rows = chunk_row_indices(np.sort(chunks) if shuffle else chunks, chunk_rows, n_rows)
            if skip and skip >= (carry_rows.size + rows.size) // batch_size:
                # Every batch of this buffer is skipped: shuffle the indices alone, keep the carry's.
                rows = np.concatenate([carry_rows, rows])
                if shuffle:
                    rows = rows[row_rng.permutation(rows.size)]
                full = rows.size - rows.size % batch_size
                skip -= full // batch_size
                carry_raw, carry_rows = None, rows[full:].copy()
                continue
            raw = read_rows(arr, rows)
            if carry_rows.size:
                if carry_raw is None:  # carried over from a skipped buffer: read now
                    carry_raw = read_rows(arr, carry_rows)
                raw, rows = np.concatenate([carry_raw, raw]), np.concatenate([carry_rows, rows])
            if shuffle:
                perm = row_rng.permutation(rows.size)
                raw, rows = raw[perm], rows[perm]
            full = rows.size - rows.size % batch_size
            for start in range(skip * batch_size, full, batch_size):
                yield raw[start:start + batch_size], rows[start:start + batch_size]
            skip = 0
            # Copies, so the buffer itself can be freed before the next read.
            carry_raw, carry_rows = raw[full:].copy(), rows[full:].copy()
        if carry_rows.size and not drop_last:
            if skip:
                skip -= 1
            else:
                yield (read_rows(arr, carry_rows) if carry_raw is None else carry_raw), carry_rows
