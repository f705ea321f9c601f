"""Checksummed chunks: a damaged activation store is an error that names the chunk, never wrong data.

Every array of a store (layout version 2) ends its codec chain with CRC32C, over the
bytes as stored: after compression, and alone when there is none. zarr checks it on
every read, but its error names neither the array nor the chunk; :func:`checked`
adds them (reading the chunks of a failed read one by one to find the bad ones),
and :func:`verify_arrays` reads every chunk of a store, and lists any missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from interp_pipeline.activations.layout import chunk_range

if TYPE_CHECKING:
    import zarr

T = TypeVar("T")
_SHOWN = 5  # bad chunks named in one message


class CorruptChunkError(ValueError):
    """A chunk of an activation store failed its checksum or could not be decoded."""


@dataclass(frozen=True)
class BadChunk:
    """One chunk of one array that cannot be trusted: ``problem`` says why."""

    array: str
    chunk: int
    rows: tuple[int, int]  # [start, stop)
    problem: str

    def __str__(self) -> str:
        return f"array '{self.array}' chunk {self.chunk} (rows {self.rows[0]}-{self.rows[1] - 1}): {self.problem}"


def codecs(compressor: Any) -> list[Any]:
    """The bytes-to-bytes codecs of every array: the compressor, if any, then CRC32C."""
    from zarr.codecs import Crc32cCodec

    return [*([] if compressor is None else [compressor]), Crc32cCodec()]


def store_url(arr: zarr.Array) -> str:
    """The store an array belongs to, as the user named it (a path for local stores, a URL for fsspec's)."""
    fs = getattr(arr.store, "fs", None)
    if fs is not None:  # an FsspecStore, whose str() is its repr: rebuild "s3://bucket/path"
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        group = arr.store_path.path.removesuffix(arr.path).strip("/")
        root = f"{protocol}://{arr.store.path.rstrip('/')}"
        return f"{root}/{group}" if group else root
    full = str(arr.store_path).removesuffix("/" + arr.path)
    return full.removeprefix("file://")


def _problem(error: BaseException) -> str:
    text = str(error)
    if "checksum" in text:
        return "CRC32C checksum mismatch (the stored bytes changed since they were written)"
    return f"cannot be decoded ({type(error).__name__}: {text[:200]})"


def chunks_of(arr: zarr.Array, rows: np.ndarray | tuple[int, int]) -> np.ndarray:
    """Indices of the row chunks holding ``rows`` (an index array, or a [start, stop) span)."""
    chunk_rows = int(arr.chunks[0])
    if isinstance(rows, tuple):
        start, stop = rows
        return np.arange(start // chunk_rows, -(-stop // chunk_rows)) if stop > start else np.empty(0, np.int64)
    return np.unique(np.asarray(rows) // chunk_rows)


def bad_chunks(arr: zarr.Array, chunks: Iterable[int]) -> list[BadChunk]:
    """The chunks among ``chunks`` that fail to read, each read alone."""
    chunk_rows, n_rows = int(arr.chunks[0]), int(arr.shape[0])
    bad = []
    for chunk in chunks:
        start, stop = chunk_range(int(chunk), chunk_rows, n_rows)
        try:
            arr[start:stop]
        except Exception as error:  # noqa: BLE001 - whatever the codec raised, it is this chunk's
            bad.append(BadChunk(arr.path, int(chunk), (start, stop), _problem(error)))
    return bad


def corrupt_error(url: str, bad: list[BadChunk]) -> CorruptChunkError:
    listed = "; ".join(str(b) for b in bad[:_SHOWN]) + (f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
    return CorruptChunkError(
        f"activation store {url} is damaged: {listed}. ActivationStore.verify() lists every bad chunk; "
        "delete the store (for the cache stage's own store, its cache entry goes with it) and rerun to write it again")


def checked(arr: zarr.Array, rows: np.ndarray | tuple[int, int], read: Callable[[], T]) -> T:
    """``read()``, which reads ``rows`` of ``arr``; a decode failure becomes a CorruptChunkError naming the chunks.

    Finding the bad chunks costs a second read, paid only when the first one failed.
    An error no single chunk reproduces is not about the data, and is raised as it was.
    """
    try:
        return read()
    except Exception as error:
        bad = bad_chunks(arr, chunks_of(arr, rows))
        if not bad:
            raise
        raise corrupt_error(store_url(arr), bad) from error


def missing_chunks(arr: zarr.Array, chunks: Iterable[int]) -> list[BadChunk]:
    """Chunks among ``chunks`` with no object in the store (the writer writes every chunk, zeros too)."""
    from zarr.core.sync import sync

    async def keys() -> set[str]:
        return {key async for key in arr.store.list_prefix(arr.path + "/")}

    present = sync(keys())
    chunk_rows, n_rows, tail = int(arr.chunks[0]), int(arr.shape[0]), (0,) * (arr.ndim - 1)
    missing = []
    for chunk in chunks:
        key = f"{arr.path}/{arr.metadata.encode_chunk_key((int(chunk), *tail))}"
        if key not in present:
            missing.append(BadChunk(arr.path, int(chunk), chunk_range(int(chunk), chunk_rows, n_rows),
                                    "missing (a chunk flagged done has no object in the store)"))
    return missing


def verify_arrays(arrays: list[zarr.Array], done: np.ndarray) -> list[BadChunk]:
    """Every chunk flagged in ``done``, of every array: missing, or failing to read."""
    flagged = np.flatnonzero(done)
    found = []
    for arr in arrays:
        missing = missing_chunks(arr, flagged)
        absent = {b.chunk for b in missing}
        found += missing + bad_chunks(arr, (c for c in flagged if c not in absent))
    return sorted(found, key=lambda b: (b.array, b.chunk))
