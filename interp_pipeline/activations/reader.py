"""Read activation stores (layout version 2): rows by index, token look-ups, shuffled batches.

An activation store is a zarr v3 group written by ``interp_pipeline.activations.writer``:
one ``[n_rows, *row_shape]`` array per hook under ``activations/``, the token id,
sequence index and position of every row, and a ``chunk_done`` flag per chunk so
an interrupted write can resume. Every chunk carries a CRC32C checksum: a damaged
one raises CorruptChunkError naming its array and chunk, and ``verify()`` checks
them all. This module is the notebook-facing API::

    store = ActivationStore.open("outputs/activations/abc123.zarr")
    x = store.read("blocks.0.hook_resid_pre", slice(0, 1024))
    store["resid_pre", 0][3, -1]     # as TransformerLens's cache["resid_pre", 0][3, -1]: [d_model]
    for batch in store.iter_batches("blocks.0.hook_resid_pre", 4096, seed=0, epochs=2):
        ...

Importing it does not import torch; torch is imported by the calls that return tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.activations.checksums import BadChunk, bad_chunks, checked, verify_arrays
from interp_pipeline.activations.chunked_reads import read_rows, shuffled_batches
from interp_pipeline.activations.hook_view import HookView, hook_name
from interp_pipeline.activations.layout import DTYPES, LAYOUT_VERSION, missing_shards_text
from interp_pipeline.activations.store_group import IncompleteStoreError, StoreLayoutError, check_layout, open_group
from interp_pipeline.activations.token_runs import first_run
from interp_pipeline.common.errors import did_you_mean

if TYPE_CHECKING:
    import torch
    import zarr

# Logical dtype -> numpy dtype the array is stored as. numpy has no bfloat16, so the
# writer stores its raw bits as uint16 and we reinterpret them on the way out.
_STORED_DTYPE = {logical: np.dtype(stored) for logical, stored in DTYPES.items()}
_INDEX_ARRAYS = ("token_ids", "sequence", "position")



class _LookupError(KeyError):
    # KeyError's str() is the repr of its argument (quotes, escaped quotes); users see
    # these messages in notebooks, so print them as written.
    def __str__(self) -> str:
        return str(self.args[0])


class ActivationStore:
    """A read-only view of one activation store; cheap to open (reads attributes and ``chunk_done``)."""

    hooks: list[str]
    n_rows: int
    chunk_rows: int
    n_chunks: int
    dtype: str
    attrs: dict[str, Any]

    def __init__(self, group: zarr.Group, url: str, attrs: dict[str, Any], *,
                 allow_incomplete: bool, storage_options: dict[str, Any] | None = None):
        # Use ActivationStore.open(); this only binds an already validated group.
        self._group = group
        self._url = url
        self._allow_incomplete = allow_incomplete
        self._storage_options = storage_options
        self.attrs = attrs
        self.hooks = list(attrs["hooks"])
        self.n_rows = int(attrs["n_rows"])
        self.chunk_rows = int(attrs["chunk_rows"])
        self.n_chunks = int(attrs["n_chunks"])
        self.dtype = str(attrs["dtype"])
        self._row_shapes = {h: tuple(int(s) for s in attrs["row_shape"][h]) for h in self.hooks}
        self._arrays: dict[str, zarr.Array] = {}
        self._index: dict[str, np.ndarray] = {}

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | os.PathLike[str], *, allow_incomplete: bool = False,
             storage_options: dict[str, Any] | None = None) -> ActivationStore:
        """Open the store at a local path or fsspec URL (``s3://...``, ``gs://...``, ``memory://...``).

        Raises StoreLayoutError when the path holds no activation store (or one of an
        unknown layout version), and IncompleteStoreError when its writer has not
        finished, unless ``allow_incomplete`` (reading unwritten chunks then returns
        zeros; which chunks are written is in ``chunk_done()``). ``storage_options``
        go to fsspec (credentials, endpoints) for URLs.
        """
        url = os.fspath(url)
        group = open_group(url, storage_options)
        attrs = dict(group.attrs)
        check_layout(url, attrs)
        store = cls(group, url, attrs, allow_incomplete=allow_incomplete, storage_options=storage_options)
        if not allow_incomplete:
            done = store.chunk_done()
            if not attrs["complete"] or not done.all():
                shards = int(attrs.get("num_shards", 1))
                how = (missing_shards_text(done, shards) if shards > 1 and not done.all()
                       else "rerun the same command to resume")
                raise IncompleteStoreError(
                    f"activation store {url} is incomplete: {int(done.sum())} of {store.n_chunks} chunks "
                    f"written; {how} (or open with allow_incomplete=True)")
        return store

    # Pickled (DataLoader workers under spawn, multiprocessing) as its URL: zarr groups
    # hold store handles and event loops that must not cross processes.
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self._url, "attrs": self.attrs, "allow_incomplete": self._allow_incomplete,
                "storage_options": self._storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # No re-validation: the store was checked when first opened.
        group = open_group(state["url"], state["storage_options"])
        self.__init__(group, state["url"], state["attrs"], allow_incomplete=state["allow_incomplete"],
                      storage_options=state["storage_options"])

    def _reopened(self) -> ActivationStore:
        """A fresh handle on the same store, for a new process (see __getstate__)."""
        clone = object.__new__(type(self))
        clone.__setstate__(self.__getstate__())
        return clone

    @property
    def url(self) -> str:
        return self._url

    # ---- shapes and raw arrays ------------------------------------------------------------

    def row_shape(self, hook: str) -> tuple[int, ...]:
        """Shape of one row of ``hook``: ``(d,)``, or ``(n_heads, d_head)`` for per-head hooks."""
        self._check_hook(hook)
        return self._row_shapes[hook]

    def chunk_done(self) -> np.ndarray:
        """Per chunk, True once the writer has written it for every array."""
        return self._whole("chunk_done").astype(bool)

    def _whole(self, name: str) -> np.ndarray:
        node = self._node(name)
        return np.asarray(checked(node, (0, node.shape[0]), lambda: node[:]))

    def verify(self) -> list[BadChunk]:
        """Read every chunk of every array; the ones that are damaged or missing (empty when all are sound).

        Reads the whole store (once, a chunk at a time). Only chunks flagged done are
        checked, so an incomplete store verifies what it has; a damaged ``chunk_done``
        flag counts as done, so the chunk it flags is checked too.
        """
        flags = self._node("chunk_done")
        broken = bad_chunks(flags, range(self.n_chunks))
        done = np.ones(self.n_chunks, bool)
        sound = np.setdiff1d(np.arange(self.n_chunks), [b.chunk for b in broken])
        if sound.size:
            done[sound] = np.asarray(flags.oindex[sound]).astype(bool)
        arrays = [self._array(h) for h in self.hooks] + [self._node(name) for name in _INDEX_ARRAYS]
        return broken + verify_arrays(arrays, done)

    def _check_hook(self, hook: str) -> None:
        if hook not in self._row_shapes:
            hint = did_you_mean(hook, self.hooks)
            raise _LookupError(f"'{hook}' is not a hook of activation store {self._url}; "
                               + (hint or f"hooks: {', '.join(self.hooks)}"))

    def _node(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            try:
                self._arrays[name] = self._group[name]
            except KeyError:
                raise StoreLayoutError(f"activation store {self._url} has no array '{name}' "
                                       f"(layout version {LAYOUT_VERSION} requires it)") from None
        return self._arrays[name]

    def _array(self, hook: str) -> zarr.Array:
        self._check_hook(hook)
        arr = self._node(f"activations/{hook}")
        expected = _STORED_DTYPE[self.dtype]
        if arr.dtype != expected or tuple(arr.shape) != (self.n_rows, *self._row_shapes[hook]):
            raise StoreLayoutError(
                f"activation store {self._url}: array 'activations/{hook}' is {arr.dtype}{list(arr.shape)}, "
                f"expected {expected}{[self.n_rows, *self._row_shapes[hook]]} for dtype {self.dtype}")
        return arr

    # ---- TransformerLens-style access -------------------------------------------------------

    def __getitem__(self, key: str | tuple[Any, ...]) -> HookView:
        """``store["blocks.8.hook_resid_pre"]`` or ``store["resid_pre", 8]`` (as ``ActivationCache``):
        a lazy ``[sequence, position, *row_shape]`` view of that hook (``hook_view.HookView``)."""
        return HookView(self, hook_name(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, tuple)) and hook_name(key) in self._row_shapes

    def keys(self) -> list[str]:
        """The hooks stored, as ``ActivationCache.keys()``."""
        return list(self.hooks)

    # ---- reading rows ---------------------------------------------------------------------

    def read(self, hook: str, rows: int | slice | Sequence[int] | np.ndarray, *, as_torch: bool = True) -> Any:
        """Rows of ``hook``, in the order asked for.

        ``rows`` is a slice, an int (one row, without the leading axis), a sequence or
        array of row indices (negative ones count from the end; repeats allowed), or a
        boolean mask of length ``n_rows``. Returns a torch tensor of the store's dtype
        (bfloat16 stays ``torch.bfloat16``) or, with ``as_torch=False``, a numpy array
        (bfloat16 widened to float32, numpy having no bfloat16).
        """
        arr = self._array(hook)
        if isinstance(rows, (int, np.integer)):
            index = _normalize_index(np.array([rows]), self.n_rows)
            return self._convert(read_rows(arr, index)[0], as_torch)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_rows)
            if step == 1:
                return self._convert(read_rows(arr, np.arange(start, max(start, stop))), as_torch)
            index = np.arange(start, stop, step)
        else:
            index = _normalize_index(np.asarray(rows), self.n_rows)
        return self._convert(read_rows(arr, index), as_torch)

    def _convert(self, raw: np.ndarray, as_torch: bool) -> Any:
        raw = np.ascontiguousarray(raw)
        if not as_torch:
            if self.dtype == "bfloat16":
                # bfloat16 is the top half of a float32: shifting the bits up is exact.
                return (raw.astype(np.uint32) << 16).view(np.float32)
            return raw
        import torch

        if self.dtype == "bfloat16":
            # int16 rather than uint16: torch.from_numpy takes int16 on every torch version.
            return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(raw)

    # ---- token index ----------------------------------------------------------------------

    def _index_array(self, name: str) -> np.ndarray:
        # Loaded whole on first use and kept (4 bytes a row each); look-ups need all of it.
        if name not in self._index:
            values = self._whole(name)
            values.flags.writeable = False
            self._index[name] = values
        return self._index[name]

    def token_ids(self) -> np.ndarray:
        """Token id of every row (int32, read-only, cached)."""
        return self._index_array("token_ids")

    def sequences(self) -> np.ndarray:
        """Index of the source sequence of every row (int32, read-only, cached)."""
        return self._index_array("sequence")

    def positions(self) -> np.ndarray:
        """Token position, within its sequence, of every row (int32, read-only, cached)."""
        return self._index_array("position")

    def rows_of_sequence(self, sequence: int) -> np.ndarray:
        """Row indices of one source sequence, in position order; KeyError if it has no rows."""
        rows = np.flatnonzero(self.sequences() == sequence)
        if rows.size == 0:
            raise _LookupError(f"sequence {sequence} has no rows in activation store {self._url}")
        return rows[np.argsort(self.positions()[rows], kind="stable")]

    def find_tokens(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows holding ``token_ids`` as consecutive tokens of one sequence: the first match in row order.

        A match is a run of adjacent rows, all of one sequence, at consecutive positions,
        whose token ids equal ``token_ids`` (a whole stored sequence or any stretch of one).
        Raises KeyError when no stored sequence contains them.
        """
        query = np.asarray(token_ids, dtype=np.int64).ravel()
        if query.size == 0:
            raise ValueError("find_tokens: expected at least one token id, found none")
        start = first_run(query, self.token_ids(), self.sequences(), self.positions())
        if start is None:
            shown = query.tolist() if query.size <= 16 else query[:16].tolist() + ["..."]
            raise _LookupError(f"token ids {shown} are not stored as one run of a sequence "
                               f"in activation store {self._url}")
        return np.arange(start, start + query.size)

    # ---- batches --------------------------------------------------------------------------

    def iter_batches(self, hook: str, batch_size: int, *, seed: int = 0, epochs: int = 1, shuffle: bool = True,
                     buffer_chunks: int = 8, drop_last: bool = False, as_torch: bool = True,
                     with_rows: bool = False, first_epoch: int = 0, n_rows: int | None = None,
                     skip: int = 0) -> Iterator[Any]:
        """Batches of ``batch_size`` rows of ``hook``, shuffled across the whole store without loading it.

        Each epoch permutes the chunk order (seeded by ``seed`` and the epoch number),
        reads ``buffer_chunks`` whole chunks at a time, permutes the rows within the
        buffer and yields full batches; rows left over carry into the next buffer, so
        every row appears exactly once per epoch and only the epoch's last batch may
        be short (dropped with ``drop_last``). The same seed gives the same order;
        epochs differ from each other. ``shuffle=False`` yields rows in store order.
        Memory holds at most ``buffer_chunks * chunk_rows + batch_size`` rows.

        ``with_rows`` yields ``(batch, row_indices)`` to map rows back to tokens
        (``token_ids()[row_indices]``). ``first_epoch`` numbers the epochs from there,
        for resuming: epoch ``e`` is the same whether reached by ``epochs`` or resumed.
        ``skip`` leaves out the first epoch's first batches (a resumed position) without
        reading them. ``n_rows`` reads only the store's first rows (the rest held out).
        """
        return self._iter_batches(hook, batch_size, seed=seed, epochs=epochs, shuffle=shuffle,
                                  buffer_chunks=buffer_chunks, drop_last=drop_last, as_torch=as_torch,
                                  with_rows=with_rows, first_epoch=first_epoch, n_rows=n_rows, skip=skip)

    def _iter_batches(self, hook: str, batch_size: int, *, seed: int, epochs: int, shuffle: bool,
                      buffer_chunks: int, drop_last: bool, as_torch: bool, with_rows: bool,
                      first_epoch: int, part: int = 0, n_parts: int = 1, n_rows: int | None = None,
                      skip: int = 0) -> Iterator[Any]:
        # Validated before the generator starts, so mistakes raise at the call, not at first next().
        for name, value, least in (("batch_size", batch_size, 1), ("buffer_chunks", buffer_chunks, 1),
                                   ("epochs", epochs, 0), ("seed", seed, 0), ("first_epoch", first_epoch, 0),
                                   ("skip", skip, 0)):
            if not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"iter_batches: expected {name} to be an integer >= {least}, found {value!r}")
        if n_rows is not None and not 0 < n_rows <= self.n_rows:
            raise ValueError(f"iter_batches: expected n_rows in 1..{self.n_rows}, found {n_rows!r}")
        arr = self._array(hook)
        return self._batches(arr, batch_size, seed=int(seed), epochs=range(first_epoch, first_epoch + epochs),
                             shuffle=shuffle, buffer_chunks=buffer_chunks, drop_last=drop_last,
                             as_torch=as_torch, with_rows=with_rows, part=part, n_parts=n_parts,
                             n_rows=self.n_rows if n_rows is None else n_rows, skip=skip)

    def _batches(self, arr: zarr.Array, batch_size: int, *, seed: int, epochs: range, shuffle: bool,
                 buffer_chunks: int, drop_last: bool, as_torch: bool, with_rows: bool,
                 part: int, n_parts: int, n_rows: int, skip: int) -> Iterator[Any]:
        for raw, rows in shuffled_batches(arr, n_rows, self.chunk_rows, batch_size, seed=seed, epochs=epochs,
                                          shuffle=shuffle, buffer_chunks=buffer_chunks, drop_last=drop_last,
                                          part=part, n_parts=n_parts, skip=skip):
            batch = self._convert(raw, as_torch)
            yield (batch, rows) if with_rows else batch

    def torch_dataset(self, hook: str, batch_size: int, **kwargs: Any) -> torch.utils.data.IterableDataset:
        """An IterableDataset of whole batches; use ``DataLoader(ds, batch_size=None)``.

        ``kwargs`` are those of ``iter_batches`` (``seed``, ``epochs``, ``shuffle``,
        ``buffer_chunks``, ``drop_last``, ``with_rows``). With ``num_workers > 1`` the
        workers split the chunks, so every row still comes once per epoch; each worker
        may end the epoch with one short batch. Call ``ds.set_epoch(e)`` before each
        pass of a training loop that iterates the DataLoader once per epoch, or every
        pass repeats epoch 0's order.
        """
        from interp_pipeline.activations.torch_data import ActivationBatches

        self._check_hook(hook)
        return ActivationBatches(self, hook, batch_size, **kwargs)

    # ---- sizes ----------------------------------------------------------------------------

    def nbytes_on_disk(self) -> int:
        """Bytes the store occupies: every stored object (chunks and metadata) under its path."""
        from zarr.storage import LocalStore

        store = self._group.store
        path = self._group.store_path.path
        if isinstance(store, LocalStore):
            total = 0
            for folder, _, files in os.walk(os.path.join(store.root, path)):
                total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
            return total
        from zarr.core.sync import sync

        # Remote stores: one size request per object, issued concurrently by zarr.
        return int(sync(store.getsize_prefix(path)))

    def nbytes_uncompressed(self) -> int:
        """Bytes of the data uncompressed: every hook's rows plus the three int32 index arrays."""
        itemsize = _STORED_DTYPE[self.dtype].itemsize
        acts = sum(self.n_rows * math.prod(shape) * itemsize for shape in self._row_shapes.values())
        return acts + self.n_rows * 4 * len(_INDEX_ARRAYS)

    def compression_ratio(self) -> float:
        """Uncompressed over on-disk size (above 1 when compression pays)."""
        on_disk = self.nbytes_on_disk()
        return self.nbytes_uncompressed() / on_disk if on_disk else float("inf")

    def __repr__(self) -> str:
        # Cheap on purpose (no listing of remote objects): the size shown is uncompressed.
        hooks = ", ".join(self.hooks[:4]) + (f", ... ({len(self.hooks)} hooks)" if len(self.hooks) > 4 else "")
        return (f"ActivationStore({self._url!r}, hooks=[{hooks}], rows={self.n_rows:,}, dtype={self.dtype}, "
                f"size={_human_bytes(self.nbytes_uncompressed())} uncompressed)")


# ---- helpers ------------------------------------------------------------------------------


def _normalize_index(index: np.ndarray, n_rows: int) -> np.ndarray:
    if index.dtype == bool:
        if index.shape != (n_rows,):
            raise IndexError(f"expected a boolean mask of length {n_rows}, found shape {list(index.shape)}")
        return np.flatnonzero(index)
    if index.size == 0:
        return np.empty(0, np.int64)
    if not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
        raise IndexError(f"expected a slice, an int or a 1-d sequence of row indices, found {index.dtype} "
                         f"array of shape {list(index.shape)}")
    index = index.astype(np.int64)
    bad = (index < -n_rows) | (index >= n_rows)
    if bad.any():
        raise IndexError(f"row {int(index[bad][0])} is out of range for a store of {n_rows} rows")
    return np.where(index < 0, index + n_rows, index)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable; keeps type checkers content
