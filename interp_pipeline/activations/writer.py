"""Write activations into a store chunk by chunk, resumably, from one process or several.

Each row chunk is assembled in memory, handed to a background writer thread through
a bounded queue (so the forward pass and the writes overlap, and memory stays at a
few chunks whatever the token budget), written for every array, and only then
flagged in ``chunk_done``. A process killed at any point leaves chunks that are
either flagged (complete) or not (rewritten on resume); the store's ``complete``
attribute is set once every chunk is flagged.

Creating a store is atomic in effect: the group is made with a ``creating`` marker,
then its arrays, then its attributes replace the marker; a store still marked is one
whose creation was killed, and is made again. zarr writes every object to a
``<name>.<uuid>.partial`` file and renames it into place, so a kill leaves no torn
chunk, only temporaries: a resumed run removes them.

Shards on one machine take turns creating under a file lock beside a local store. An
object store (s3://, gs://) has no such lock, so there shard 0 alone creates (or
re-creates a store whose creation was killed) and the other shards wait until the
group's attributes no longer carry the marker: its ``zarr.json`` is written last, in
one PUT, so they never see a half-made layout. Object stores write each object in one
request: no ``.partial`` temporaries, nothing to clean up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from interp_pipeline.activations.checksums import codecs
from interp_pipeline.activations.layout import DTYPES, LAYOUT_ATTR, LAYOUT_VERSION, RowPlan, chunk_range, differences
from interp_pipeline.storage.locks import lock_beside

log = logging.getLogger(__name__)

CREATING = "creating"
# How long a shard of an object store waits for shard 0 to create it, and how often it says so.
CREATION_WAIT_S = float(os.environ.get("INTERP_PIPELINE_STORE_CREATION_WAIT_S", 3600))
CREATION_LOG_S = 30.0
# Tests only: a file to create once the group exists and before its attributes are
# written, after which creation waits (for a SIGKILL to arrive at the worst moment).
PAUSE_ENV = "INTERP_PIPELINE_TEST_PAUSE_STORE_CREATION"
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
# Chunks of zeros are written too: then a chunk flagged done always has an object, and
# verify() can tell a deleted chunk from one that was all zeros.
_ARRAY_CONFIG = {"write_empty_chunks": True}


class StoreMismatch(Exception):
    """An existing store was made by another model, hook set or dataset; names what differs."""


def _compressor(name: str | None, level: int) -> Any:
    from zarr.codecs import BloscCodec, ZstdCodec

    if name in (None, "none"):
        return None
    if name == "zstd":
        return ZstdCodec(level=level)
    if name == "blosc":
        return BloscCodec(cname="zstd", clevel=level, shuffle="bitshuffle")
    raise ValueError(f"expected compression zstd, blosc or none, found '{name}'")


def _local_root(url: str) -> Path | None:
    if "://" in url and not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://"))


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Serialise store creation (and attribute updates) between shards on one machine (local paths only)."""
    path = _local_root(url)
    if path is None:
        yield  # object stores: let shard 0 create it first (see README)
        return
    with lock_beside(path):
        yield


def _storage_options(url: str) -> dict[str, Any] | None:
    # fsspec's local filesystem does not create parent directories unless asked to.
    return {"auto_mkdir": True} if url.startswith("file://") else None


def _open_existing(url: str, options: dict[str, Any] | None) -> Any:
    """The group at ``url`` opened for writing, or None when there is none."""
    import zarr

    try:
        return zarr.open_group(url, mode="r+", storage_options=options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None


def _check_same(url: str, group: Any, attributes: dict[str, Any]) -> None:
    existing = dict(group.attrs)
    differ = differences(existing, attributes)
    if differ:
        detail = "; ".join(f"{k}: store has {existing.get(k)!r}, this run {attributes.get(k)!r}"
                           for k in differ[:3])
        raise StoreMismatch(f"the store at {url} was written by another configuration ({detail})")


def wait_for_creation(url: str, shard_index: int) -> Any:
    """An object store's group once shard 0 has finished creating it (see the module docstring)."""
    options = _storage_options(url)
    started = time.monotonic()
    next_report = started
    while True:
        group = _open_existing(url, options)
        if group is not None and not group.attrs.get(CREATING):
            return group
        now = time.monotonic()
        if now - started > CREATION_WAIT_S:
            raise TimeoutError(f"shard {shard_index} waited {CREATION_WAIT_S:.0f} s for shard 0 to create the store "
                               f"at {url}; shard 0 (cache.shard_index=0) creates an object store: run it too")
        if now >= next_report:
            log.info("shard %d: waiting for shard 0 to create the store at %s", shard_index, url)
            next_report = now + CREATION_LOG_S
        time.sleep(0.25)


def open_or_create(url: str, attributes: dict[str, Any], compression: str | None, level: int,
                   shard_index: int = 0) -> Any:
    """The store at ``url``: created if absent, checked against ``attributes`` if present.

    On an object store only shard 0 creates it; other shards wait for it (see the module docstring).
    """
    import zarr

    options = _storage_options(url)
    if _local_root(url) is None and shard_index != 0:
        group = wait_for_creation(url, shard_index)
        _check_same(url, group, attributes)
        return group
    with creation_lock(url):
        group = _open_existing(url, options)
        if group is not None and not group.attrs.get(CREATING):
            _check_same(url, group, attributes)
            remove_partials(url, chunks=None)
            return group
        # Absent, or a creation killed before its attributes were written (nothing else is
        # written before them): made afresh. mode="w" replaces whatever was there.
        group = zarr.open_group(url, mode="w", storage_options=options,
                                attributes={LAYOUT_ATTR: LAYOUT_VERSION, CREATING: True})
        _pause_for_tests()
        compressors = codecs(_compressor(compression, level))
        rows, chunk = attributes["n_rows"], attributes["chunk_rows"]
        stored = DTYPES[attributes["dtype"]]
        activations = group.require_group("activations")
        for hook in attributes["hooks"]:
            shape = attributes["row_shape"][hook]
            names = ("token", "head", "d_head") if len(shape) == 2 else ("token", "d_model")
            activations.create_array(hook, shape=(rows, *shape), chunks=(chunk, *shape), dtype=stored,
                                     compressors=compressors, dimension_names=names, fill_value=0)
        for name in ("token_ids", "sequence", "position"):
            group.create_array(name, shape=(rows,), chunks=(chunk,), dtype="int32", compressors=compressors,
                               dimension_names=("token",), fill_value=0)
        group.create_array("chunk_done", shape=(attributes["n_chunks"],), chunks=(1,), dtype="uint8",
                           compressors=codecs(None), fill_value=0)
        group.attrs.put(attributes)  # last, and without the marker: the store now exists
        return group


def _pause_for_tests() -> None:
    ready = os.environ.get(PAUSE_ENV)
    if ready:
        Path(ready).touch()
        time.sleep(600)


def remove_partials(url: str | None, chunks: set[int] | None) -> int:
    """Remove zarr's temporary files left by a killed write: of ``chunks``' chunk objects, or (None) of metadata.

    A chunk's temporaries belong to the shard that owns the chunk, and metadata is
    written under the creation lock, so neither can be a live write of another process.
    Local stores only (object stores write each object in one request). Returns how many.
    """
    root = None if url is None else _local_root(url)
    if root is None or not root.is_dir():
        return 0
    removed = 0
    for path in root.rglob("*.partial"):
        if not _PARTIAL.search(path.name):
            continue
        parts = path.relative_to(root).parts
        # A chunk's object is <array>/c/<chunk>[/0...]; anything else is metadata (zarr.json).
        chunk = int(parts[parts.index("c") + 1].split(".")[0]) if "c" in parts[:-1] else None
        if (chunks is None and chunk is None) or (chunks is not None and chunk in chunks):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def local_path(group: Any) -> str | None:
    """The directory of an open group when zarr writes it as local files (LocalStore), else None."""
    from zarr.storage import LocalStore

    if not isinstance(group.store, LocalStore):
        return None  # object stores, and fsspec's local files: written without temporaries
    return str(Path(group.store.root) / group.store_path.path)


def done_chunks(group: Any) -> np.ndarray:
    return np.asarray(group["chunk_done"][:], dtype=bool)


class ChunkWriter:
    """A background thread that writes whole chunks and then flags them done."""

    def __init__(self, group: Any, plan: RowPlan, token_ids: np.ndarray, queue_size: int = 4):
        self.group = group
        names = [f"activations/{hook}" for hook in group.attrs["hooks"]] + ["token_ids", "sequence", "position"]
        self.arrays = {name: group[name].with_config(_ARRAY_CONFIG) for name in [*names, "chunk_done"]}
        self.plan = plan
        self.token_ids = token_ids
        self.queue: queue.Queue[tuple[int, dict[str, np.ndarray]] | None] = queue.Queue(maxsize=queue_size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="activation-writer", daemon=True)
        self.thread.start()

    def put(self, chunk: int, arrays: dict[str, np.ndarray]) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing chunk failed: {self.error}") from self.error
        self.queue.put((chunk, arrays))

    def _run(self) -> None:
        chunk_rows = self.group.attrs["chunk_rows"]
        n_rows = self.plan.n_rows
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            chunk, arrays = item
            start, stop = chunk_range(chunk, chunk_rows, n_rows)
            try:
                for hook, values in arrays.items():
                    self.arrays[f"activations/{hook}"][start:stop] = values
                self.arrays["token_ids"][start:stop] = self.token_ids[start:stop]
                self.arrays["sequence"][start:stop] = self.plan.sequence[start:stop]
                self.arrays["position"][start:stop] = self.plan.position[start:stop]
                self._flag_done(chunk)
            except BaseException as error:  # noqa: BLE001 - handed to the producer thread
                self.error = error

    def _flag_done(self, chunk: int) -> None:
        # Last: a chunk counts only once every array of it is written.
        self.arrays["chunk_done"][chunk] = 1

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"writing a chunk failed: {type(self.error).__name__}: {self.error}") from self.error


def write_chunks(
    group: Any,
    plan: RowPlan,
    token_ids: np.ndarray,
    chunks: list[int],
    activations_of_batch: Callable[[int], dict[str, np.ndarray]],
    on_rows: Callable[[int], None] = lambda n: None,
) -> int:
    """Compute and write ``chunks`` (indices of undone chunks), batch by batch.

    ``activations_of_batch(b)`` returns, per hook, the rows of batch ``b`` (already
    selected by position and cast to the stored dtype). Returns the rows written.
    """
    attrs = group.attrs
    chunk_rows, n_rows, hooks = attrs["chunk_rows"], plan.n_rows, list(attrs["hooks"])
    wanted = {c: chunk_range(c, chunk_rows, n_rows) for c in chunks}
    remove_partials(local_path(group), set(chunks))  # what a killed attempt at these chunks left
    buffers: dict[int, dict[str, np.ndarray]] = {}
    filled: dict[int, int] = {}
    writer = ChunkWriter(group, plan, token_ids)
    written = 0
    try:
        for batch, (r0, r1) in enumerate(plan.batch_rows):
            overlapping = [c for c, (s, e) in wanted.items() if s < r1 and e > r0]
            if not overlapping:
                continue
            rows = activations_of_batch(batch)
            for c in overlapping:
                s, e = wanted[c]
                lo, hi = max(s, r0), min(e, r1)
                if c not in buffers:
                    buffers[c] = {h: np.empty((e - s, *rows[h].shape[1:]), dtype=rows[h].dtype) for h in hooks}
                    filled[c] = 0
                for hook in hooks:
                    buffers[c][hook][lo - s:hi - s] = rows[hook][lo - r0:hi - r0]
                filled[c] += hi - lo
                if filled[c] == e - s:
                    writer.put(c, buffers.pop(c))
                    del wanted[c]
                    written += e - s
                    on_rows(e - s)
            if not wanted:
                break
    finally:
        writer.close()
    return written


def mark_complete_if_done(group: Any) -> bool:
    """Set ``complete`` once every chunk is flagged (by this process or any shard)."""
    if done_chunks(group).all():
        # Under the lock: a shard resuming meanwhile removes metadata temporaries.
        path = local_path(group)
        with creation_lock(path) if path is not None else contextlib.nullcontext():
            group.attrs["complete"] = True
        return True
    return False


def store_bytes(url: str) -> int:
    root = _local_root(url)
    if root is None:  # an object store: the sizes of its objects, in one listing
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        fs.invalidate_cache(path)
        return int(fs.du(path)) if fs.exists(path) else 0
    if not root.exists():
        return 0
    return sum(_file_sizes(root))


def _file_sizes(root: Path) -> Iterator[int]:
    # Other shards may be writing this store: zarr's ``*.partial`` files appear and are renamed
    # away between listing a folder and asking a file's size, so a file gone meanwhile counts 0.
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                yield os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue


def ensure_writable(url: str) -> None:
    """Fail before any work when a local store location cannot be written."""
    if "://" in url and not url.startswith("file://"):
        return
    path = Path(url.removeprefix("file://"))
    parent = path if path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write to '{parent}'")
