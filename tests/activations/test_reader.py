"""ActivationStore on small stores written by hand in the version-2 layout (as the writer writes them)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from interp_pipeline.activations.reader import ActivationStore, IncompleteStoreError, StoreLayoutError
from tests.support.stores import D_HEAD, D_MODEL, HEADS, N_HEADS, RESID, write_store


@pytest.fixture
def store(tmp_path: Path) -> ActivationStore:
    # 103 rows in chunks of 10: 11 chunks, the last one short.
    write_store(tmp_path / "s.zarr", n_rows=103, chunk_rows=10)
    return ActivationStore.open(tmp_path / "s.zarr")


def epoch_rows(batches: list) -> np.ndarray:
    return np.concatenate([rows for _, rows in batches])


# ---- shuffled batches -------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 7, 10, 32, 103, 500])
@pytest.mark.parametrize("buffer_chunks", [1, 3, 20])
def test_every_row_exactly_once_per_epoch(store: ActivationStore, batch_size: int, buffer_chunks: int) -> None:
    batches = list(store.iter_batches(RESID, batch_size, seed=1, epochs=2, buffer_chunks=buffer_chunks,
                                      as_torch=False, with_rows=True))
    rows = epoch_rows(batches)
    assert rows.size == 2 * 103
    for epoch in (rows[:103], rows[103:]):
        assert np.array_equal(np.sort(epoch), np.arange(103))
    for batch, idx in batches:
        assert np.array_equal(batch[:, 0], idx)  # the data is the data of those rows
    sizes = [len(idx) for _, idx in batches]
    per_epoch = -(-103 // batch_size)
    assert len(sizes) == 2 * per_epoch
    # Full batches except the last of each epoch.
    assert all(s == batch_size for i, s in enumerate(sizes) if (i + 1) % per_epoch)
    assert sizes[per_epoch - 1] == 103 - (per_epoch - 1) * batch_size


def test_rows_mix_across_chunks(store: ActivationStore) -> None:
    first = next(store.iter_batches(RESID, 30, seed=0, buffer_chunks=3, as_torch=False, with_rows=True))[1]
    assert len(set((first // 10).tolist())) >= 2  # one batch draws on several chunks
    assert not np.array_equal(first, np.sort(first))


def test_order_depends_on_seed_and_epoch_only(store: ActivationStore) -> None:
    def order(seed: int, epochs: int = 1, first_epoch: int = 0) -> np.ndarray:
        return epoch_rows(list(store.iter_batches(RESID, 16, seed=seed, epochs=epochs, first_epoch=first_epoch,
                                                  buffer_chunks=2, as_torch=False, with_rows=True)))

    assert np.array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))
    two = order(3, epochs=2)
    assert not np.array_equal(two[:103], two[103:])
    assert np.array_equal(two[103:], order(3, first_epoch=1))  # resuming at epoch 1 repeats epoch 1


def test_drop_last(store: ActivationStore) -> None:
    batches = list(store.iter_batches(RESID, 25, epochs=2, drop_last=True, as_torch=False, with_rows=True))
    assert [len(r) for _, r in batches] == [25] * 8
    rows = epoch_rows(batches)
    assert len(set(rows[:100].tolist())) == 100  # no repeats within an epoch


def test_first_rows_only_and_skipped_batches(store: ActivationStore) -> None:
    # n_rows: the rows after it (held out) never come; each of the others once per epoch.
    rows = epoch_rows(list(store.iter_batches(RESID, 8, seed=2, n_rows=57, as_torch=False, with_rows=True)))
    assert np.array_equal(np.sort(rows), np.arange(57))
    # skip: the same batches an unbroken pass gives after its first three.
    whole = list(store.iter_batches(RESID, 8, seed=2, n_rows=57, as_torch=False, with_rows=True))
    resumed = list(store.iter_batches(RESID, 8, seed=2, n_rows=57, skip=3, as_torch=False, with_rows=True))
    assert [r.tolist() for _, r in resumed] == [r.tolist() for _, r in whole[3:]]
    with pytest.raises(ValueError, match="n_rows in 1..103"):
        store.iter_batches(RESID, 8, n_rows=104)


def test_no_shuffle_is_store_order(store: ActivationStore) -> None:
    batches = list(store.iter_batches(RESID, 16, shuffle=False, buffer_chunks=2, as_torch=False))
    assert np.array_equal(np.concatenate(batches)[:, 0], np.arange(103))


def test_batches_are_torch_tensors(store: ActivationStore) -> None:
    import torch

    batch = next(store.iter_batches(HEADS, 8))
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
    assert tuple(batch.shape) == (8, N_HEADS, D_HEAD)


def test_bad_arguments_fail_at_the_call(store: ActivationStore) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        store.iter_batches(RESID, 0)
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_resid_pre'"):
        store.iter_batches("blocks.0.hook_resid_prе", 8)  # Cyrillic е


# ---- random access ----------------------------------------------------------------------------

def test_read_by_slice_and_by_index(store: ActivationStore) -> None:
    import torch

    part = store.read(RESID, slice(5, 27))
    assert isinstance(part, torch.Tensor) and part.shape == (22, D_MODEL)
    assert part[:, 0].tolist() == list(range(5, 27))
    assert store.read(RESID, slice(0, 103, 9), as_torch=False)[:, 0].tolist() == list(range(0, 103, 9))
    picked = store.read(RESID, [99, 3, 3, 57, -1], as_torch=False)
    assert picked[:, 0].tolist() == [99, 3, 3, 57, 102]
    assert store.read(RESID, np.array([], dtype=np.int64), as_torch=False).shape == (0, D_MODEL)
    assert store.read(RESID, 42, as_torch=False).tolist()[0] == 42
    assert store.read(HEADS, slice(0, 4)).shape == (4, N_HEADS, D_HEAD)
    with pytest.raises(IndexError, match="out of range"):
        store.read(RESID, [103])


def test_per_head_row_shape(store: ActivationStore) -> None:
    assert store.row_shape(HEADS) == (N_HEADS, D_HEAD)
    assert store.row_shape(RESID) == (D_MODEL,)
    with pytest.raises(KeyError, match="did you mean 'blocks.0.attn.hook_z'") as info:
        store.row_shape("blocks.0.attn.hook_q_z")
    assert "\n" not in str(info.value)


def test_bfloat16_round_trip(tmp_path: Path) -> None:
    import torch

    values = torch.randn(40, D_MODEL).to(torch.bfloat16)
    bits = values.view(torch.int16).numpy().view(np.uint16)
    write_store(tmp_path / "b.zarr", 40, 16, hooks=(RESID,), dtype="bfloat16", values={RESID: bits})
    store = ActivationStore.open(tmp_path / "b.zarr")
    back = store.read(RESID, slice(None))
    assert back.dtype == torch.bfloat16 and torch.equal(back, values)
    assert np.array_equal(store.read(RESID, [3, 1], as_torch=False), values[[3, 1]].float().numpy())
    batches = list(store.iter_batches(RESID, 16, seed=2))
    assert all(b.dtype == torch.bfloat16 for b in batches)
    assert torch.equal(torch.cat(batches).float().sum(0), values.float().sum(0))


def test_float16_reads_as_half(tmp_path: Path) -> None:
    import torch

    write_store(tmp_path / "h.zarr", 20, 8, hooks=(RESID,), dtype="float16")
    store = ActivationStore.open(tmp_path / "h.zarr")
    assert store.read(RESID, slice(0, 4)).dtype == torch.float16
    assert store.read(RESID, slice(0, 4), as_torch=False).dtype == np.float16


# ---- token look-ups ---------------------------------------------------------------------------

def test_rows_of_sequence_and_find_tokens(store: ActivationStore) -> None:
    assert store.rows_of_sequence(2).tolist() == list(range(14, 21))
    assert store.rows_of_sequence(14).tolist() == [98, 99, 100, 101, 102]  # the last, short sequence
    with pytest.raises(KeyError, match="sequence 99"):
        store.rows_of_sequence(99)
    tokens = store.token_ids()
    assert store.find_tokens(tokens[14:21].tolist()).tolist() == list(range(14, 21))
    assert store.find_tokens(tokens[30:33]).tolist() == [30, 31, 32]
    # Token ids repeat every 50 rows: the first occurrence wins.
    assert store.find_tokens(tokens[60:62].tolist()).tolist() == [10, 11]
    with pytest.raises(KeyError, match="not stored"):
        store.find_tokens(tokens[5:9].tolist())  # rows 5..8 span sequences 0 and 1
    with pytest.raises(KeyError):
        store.find_tokens([999])


def test_rows_of_sequence_sorts_by_position(tmp_path: Path) -> None:
    write_store(tmp_path / "p.zarr", 10, 5, hooks=(RESID,))
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r+")
    group["position"][:] = np.array([3, 1, 0, 2, 4, 6, 5, 0, 1, 2], np.int32)
    group["sequence"][:] = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], np.int32)
    store = ActivationStore.open(tmp_path / "p.zarr")
    assert store.rows_of_sequence(0).tolist() == [2, 1, 3, 0, 4, 6, 5]


# ---- opening ----------------------------------------------------------------------------------

def test_refuses_store_not_marked_complete(tmp_path: Path) -> None:
    write_store(tmp_path / "i.zarr", 50, 10, complete=False, chunk_done=np.array([1, 1, 0, 1, 0]))
    with pytest.raises(IncompleteStoreError) as info:
        ActivationStore.open(tmp_path / "i.zarr")
    message = str(info.value)
    assert "\n" not in message
    assert "3 of 5 chunks" in message and "rerun the same command to resume" in message
    assert str(tmp_path / "i.zarr") in message
    store = ActivationStore.open(tmp_path / "i.zarr", allow_incomplete=True)
    assert store.chunk_done().tolist() == [True, True, False, True, False]


def test_refuses_store_with_unwritten_chunk(tmp_path: Path) -> None:
    write_store(tmp_path / "i.zarr", 50, 10, complete=True, chunk_done=np.array([1, 1, 1, 1, 0]))
    with pytest.raises(IncompleteStoreError, match="4 of 5 chunks written; rerun the same command to resume"):
        ActivationStore.open(tmp_path / "i.zarr")


def test_not_an_activation_store(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("x", shape=(4,), dtype="int32")
    with pytest.raises(StoreLayoutError, match="not an interp_pipeline activation store"):
        ActivationStore.open(tmp_path / "plain.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreLayoutError, match="no zarr group"):
        ActivationStore.open(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no activation store"):
        ActivationStore.open(tmp_path / "missing.zarr")


def test_unknown_layout_version(tmp_path: Path) -> None:
    write_store(tmp_path / "v.zarr", 10, 5, hooks=(RESID,))
    zarr.open_group(str(tmp_path / "v.zarr"), mode="r+").attrs["interp_pipeline_layout"] = 1
    with pytest.raises(StoreLayoutError, match="layout version 1; this interp_pipeline reads version 2"):
        ActivationStore.open(tmp_path / "v.zarr")


# ---- sizes ------------------------------------------------------------------------------------

def test_sizes_and_compression_ratio(tmp_path: Path) -> None:
    write_store(tmp_path / "c.zarr", 2000, 500)  # mostly zeros: compresses well
    store = ActivationStore.open(tmp_path / "c.zarr")
    assert store.nbytes_uncompressed() == 2000 * (D_MODEL + N_HEADS * D_HEAD) * 4 + 2000 * 3 * 4
    on_disk = sum(f.stat().st_size for f in (tmp_path / "c.zarr").rglob("*") if f.is_file())
    assert store.nbytes_on_disk() == on_disk
    assert store.compression_ratio() > 1
    text = repr(store)
    assert RESID in text and "rows=2,000" in text and "float32" in text and "KiB" in text


def test_fsspec_url_store(tmp_path: Path) -> None:
    # Through FsspecStore rather than LocalStore: open, read, size.
    write_store(tmp_path / "f.zarr", 30, 10, hooks=(RESID,))
    store = ActivationStore.open(f"file://{tmp_path / 'f.zarr'}")
    assert store.read(RESID, [29, 0], as_torch=False)[:, 0].tolist() == [29, 0]
    on_disk = sum(f.stat().st_size for f in (tmp_path / "f.zarr").rglob("*") if f.is_file())
    assert store.nbytes_on_disk() == on_disk


# ---- torch ------------------------------------------------------------------------------------

def test_importing_reader_does_not_import_torch() -> None:
    code = "import sys, interp_pipeline.activations.reader; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_store_pickles_by_url(store: ActivationStore) -> None:
    clone = pickle.loads(pickle.dumps(store))
    assert clone.hooks == store.hooks and clone.read(RESID, [7], as_torch=False)[0, 0] == 7


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_see_each_row_once(store: ActivationStore, num_workers: int) -> None:
    from torch.utils.data import DataLoader

    dataset = store.torch_dataset(RESID, 8, seed=5, buffer_chunks=2, with_rows=True)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    seen = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        batches = list(loader)
        rows = np.concatenate([r for _, r in batches])
        assert np.array_equal(np.sort(rows), np.arange(103))
        for batch, idx in batches:
            assert batch[:, 0].tolist() == idx.tolist()
        seen.append(rows)
    assert not np.array_equal(seen[0], seen[1])  # set_epoch gives each pass a new order
