"""A damaged activation store is an error naming the chunk; a killed creation or write leaves nothing in the way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from interp_pipeline.activations.checksums import CorruptChunkError
from interp_pipeline.activations.reader import ActivationStore
from interp_pipeline.activations.writer import PAUSE_ENV
from interp_pipeline.sae.data import from_store
from interp_pipeline.stages.cache_activations import cache_activations
from tests.support.models import CACHE_PARAMS, HOOKS, tiny_model_and_tokens
from tests.conftest import REPO

RESID, HEADS = HOOKS
# 30 sequences x 12 tokens = 360 rows in chunks of 24: 15 chunks.


@pytest.fixture(scope="module")
def model_and_tokens():
    return tiny_model_and_tokens()


def write(path: Path, model_and_tokens, **params) -> Path:
    model, tokens = model_and_tokens
    cache_activations(model, tokens, store=str(path), **{**CACHE_PARAMS, **params})
    return path


def chunk_file(store: Path, array: str, chunk: int) -> Path:
    trailing = {"activations/" + RESID: "/0", "activations/" + HEADS: "/0/0"}.get(array, "")
    return store / array / "c" / f"{chunk}{trailing}"


def flip_bit(path: Path, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[bit // 8 % len(data)] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_flipped_bits_raise_naming_array_and_chunk_and_verify_lists_them(tmp_path, model_and_tokens, compression):
    store = write(tmp_path / "s.zarr", model_and_tokens, compression=compression)
    assert ActivationStore.open(store).verify() == []
    damaged = [("activations/" + RESID, 2), ("activations/" + HEADS, 9), ("token_ids", 5)]
    for array, chunk in damaged:
        flip_bit(chunk_file(store, array, chunk), bit=8 * 40 + 3)
    opened = ActivationStore.open(store)

    with pytest.raises(CorruptChunkError, match=rf"{store}.*array 'activations/{RESID}' chunk 2 \(rows 48-71\)"):
        opened.read(RESID, slice(None))
    with pytest.raises(CorruptChunkError, match=rf"array 'activations/{HEADS}' chunk 9 \(rows 216-239\): CRC32C"):
        opened.read(HEADS, [230, 3])
    with pytest.raises(CorruptChunkError, match=r"array 'activations/.*' chunk 2"):
        list(opened.iter_batches(RESID, 32, seed=0))
    with pytest.raises(CorruptChunkError, match=r"array 'token_ids' chunk 5"):
        opened.token_ids()
    assert opened.read(RESID, slice(0, 48)).shape == (48, 16)  # the sound chunks still read
    bad = opened.verify()
    assert [(b.array, b.chunk) for b in bad] == sorted(damaged)
    assert all("checksum" in b.problem for b in bad)


def test_every_single_bit_flip_is_caught(tmp_path, model_and_tokens):
    # Uncompressed, so most flips land in the values themselves (today's silent case).
    store = write(tmp_path / "s.zarr", model_and_tokens, compression="none")
    rng = np.random.default_rng(0)
    target = chunk_file(store, "activations/" + RESID, 4)
    original = target.read_bytes()
    for bit in rng.choice(len(original) * 8, size=40, replace=False):
        flip_bit(target, int(bit))
        with pytest.raises(CorruptChunkError, match=r"chunk 4 "):
            ActivationStore.open(store).read(RESID, slice(None))
        target.write_bytes(original)
    assert torch.equal(ActivationStore.open(store).read(RESID, 100), ActivationStore.open(store).read(RESID, 100))


def test_a_bad_chunk_done_flag_and_a_deleted_chunk_are_reported(tmp_path, model_and_tokens):
    store = write(tmp_path / "s.zarr", model_and_tokens)
    chunk_file(store, "position", 7).unlink()
    flip_bit(store / "chunk_done" / "c" / "11", bit=2)
    with pytest.raises(CorruptChunkError, match=r"array 'chunk_done' chunk 11 "):
        ActivationStore.open(store)
    opened = ActivationStore.open(store, allow_incomplete=True)
    problems = {(b.array, b.chunk): b.problem for b in opened.verify()}
    assert set(problems) == {("chunk_done", 11), ("position", 7)}
    assert "missing" in problems[("position", 7)]


def test_sae_data_from_a_damaged_store_stops_with_the_chunk_named(tmp_path, model_and_tokens):
    store = write(tmp_path / "s.zarr", model_and_tokens)
    flip_bit(chunk_file(store, "activations/" + RESID, 1), bit=77)
    data = from_store(str(store), {"hook": RESID, "train_batch_size_tokens": 32, "eval_tokens": 40,
                                   "training_tokens": 256, "seed": 0, "buffer_chunks": 4})
    with pytest.raises(CorruptChunkError, match=rf"array 'activations/{RESID}' chunk 1 "):
        for _ in range(10):  # one epoch is 10 batches: chunk 1 comes in it
            next(data.batches)


def script(store: Path) -> list[str]:
    return [sys.executable, "-m", "tests.activations.kill_and_resume", str(store)]


def script_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **extra}


@pytest.mark.slow
def test_kill_9_while_the_store_is_created_then_a_rerun_writes_it(tmp_path, model_and_tokens):
    store, ready = tmp_path / "s.zarr", tmp_path / "paused"
    process = subprocess.Popen(script(store), env=script_env(**{PAUSE_ENV: str(ready)}), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the writer never reached the pause"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert (store / "zarr.json").exists()  # the half-made group is there
    rerun = subprocess.run(script(store), env=script_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    reference = write(tmp_path / "reference.zarr", model_and_tokens)
    assert files(store) == files(reference)  # byte for byte, metadata and chunks


def test_partial_files_of_a_killed_write_are_removed_on_resume(tmp_path, model_and_tokens):
    store = write(tmp_path / "s.zarr", model_and_tokens)
    reference = files(store)
    # Undo chunks 3 and 12 as a kill would have left them: not flagged done, and zarr's
    # temporaries (<name>.<uuid hex>.partial, see zarr.storage._local._atomic_write) beside them.
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group["chunk_done"][3] = 0
    group["chunk_done"][12] = 0
    group.attrs["complete"] = False
    hexes = iter(f"{i:032x}" for i in range(1, 100))
    planted = [
        chunk_file(store, "activations/" + RESID, 3).with_suffix(f".{next(hexes)}.partial"),
        chunk_file(store, "activations/" + HEADS, 12).with_suffix(f".{next(hexes)}.partial"),
        chunk_file(store, "token_ids", 3).with_suffix(f".{next(hexes)}.partial"),
        store / "chunk_done" / "c" / f"12.{next(hexes)}.partial",
        store / f"zarr.{next(hexes)}.partial",
        store / "activations" / RESID / f"zarr.{next(hexes)}.partial",
    ]
    for path in planted:
        path.write_bytes(b"half a write")
    write(store, model_and_tokens)
    assert not [p for p in planted if p.exists()]
    assert files(store) == reference


def test_a_partial_file_of_a_chunk_another_shard_owns_is_left_alone(tmp_path, model_and_tokens):
    store = write(tmp_path / "s.zarr", model_and_tokens, num_shards=2, shard_index=0)
    theirs = chunk_file(store, "token_ids", 14).with_suffix(f".{'a' * 32}.partial")  # shard 1's chunk
    theirs.write_bytes(b"being written by shard 1")
    mine = chunk_file(store, "token_ids", 2).with_suffix(f".{'b' * 32}.partial")
    mine.write_bytes(b"left by a killed shard 0")
    import zarr

    zarr.open_group(str(store), mode="r+")["chunk_done"][2] = 0
    write(store, model_and_tokens, num_shards=2, shard_index=0)
    assert theirs.exists() and not mine.exists()
