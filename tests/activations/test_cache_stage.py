"""The cache-activations stage: exact round trips, resume after kill -9, sharding, refusals, memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.stages.cache_activations import cache_activations
from tests.support.models import CACHE_PARAMS, HOOKS, tiny_hooked_transformer, tiny_model_and_tokens
from tests.conftest import REPO

ARRAYS = [f"activations/{h}" for h in HOOKS] + ["token_ids", "sequence", "position", "chunk_done"]


@pytest.fixture(scope="module")
def model_and_tokens():
    return tiny_model_and_tokens()


def stored(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in ARRAYS}


def expected_rows(model, tokens, hook, rows_of_sequence):
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    return [cache[hook][i, positions] for i, positions in enumerate(rows_of_sequence)]


@pytest.mark.parametrize("positions", ["all", "last", "drop_bos", "non_padding", "2:5", "-3:"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_against_run_with_cache(tmp_path, model_and_tokens, positions, dtype):
    model, tokens = model_and_tokens
    tokens = tokens.clone()
    tokens[::3, -4:] = 0  # right padding on some rows (pad id 0 below)
    out = cache_activations(model, tokens, store=str(tmp_path / "s.zarr"), positions=positions, dtype=dtype,
                            pad_token_id=0, **CACHE_PARAMS)
    group = zarr.open_group(out["store_uri"], mode="r")
    assert group.attrs["complete"] and out["complete"]
    sequence, position = group["sequence"][:], group["position"][:]
    assert np.array_equal(group["token_ids"][:], tokens.numpy()[sequence, position])
    _, cache = model.run_with_cache(tokens, names_filter=HOOKS)
    for hook in HOOKS:
        want = cache[hook][torch.as_tensor(sequence, dtype=torch.long), torch.as_tensor(position, dtype=torch.long)]
        got = group[f"activations/{hook}"][:]
        if dtype == "bfloat16":
            got = torch.from_numpy(got.view(np.int16)).view(torch.bfloat16)
            assert torch.equal(got, want.to(torch.bfloat16))
        else:
            assert np.array_equal(got, want.to(getattr(torch, dtype)).numpy())  # exact, float32 included
    # what each option selects
    per_seq = {s: position[sequence == s].tolist() for s in np.unique(sequence)}
    if positions == "last":
        assert per_seq[0] == [7] and per_seq[1] == [11]  # row 0 is padded from position 8
    if positions == "non_padding":
        assert per_seq[0] == list(range(8)) and per_seq[1] == list(range(12))
    if positions == "drop_bos":
        assert per_seq[1] == list(range(1, 12))
    if positions == "2:5":
        assert per_seq[1] == [2, 3, 4]


def test_token_budget_stops_at_max_tokens(tmp_path, model_and_tokens):
    model, tokens = model_and_tokens
    out = cache_activations(model, tokens, store=str(tmp_path / "s.zarr"), max_tokens=50, **CACHE_PARAMS)
    assert out["n_rows"] == 50 and zarr.open_group(out["store_uri"], mode="r")["token_ids"].shape == (50,)


def run_script(store: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    if kill_at:
        env["KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "tests.activations.kill_and_resume", str(store), *args],
                          env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_and_tokens):
    model, tokens = model_and_tokens
    path = tmp_path_factory.mktemp("reference") / "s.zarr"
    cache_activations(model, tokens, store=str(path), **CACHE_PARAMS)
    return stored(path)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["put:3", "flag:6", "flag:0"])
def test_kill_9_then_the_same_command_finishes_an_identical_store(tmp_path, reference, kill_at):
    store = tmp_path / "s.zarr"
    killed = run_script(store, kill_at=kill_at)
    assert killed.returncode == -9, killed.stderr
    group = zarr.open_group(str(store), mode="r")
    assert not group.attrs["complete"] and not group["chunk_done"][:].all()
    chunk = int(kill_at.split(":")[1])
    assert group["chunk_done"][chunk] == 0  # the chunk being handled when killed is not flagged
    resumed = run_script(store)
    assert resumed.returncode == 0, resumed.stderr
    assert zarr.open_group(str(store), mode="r").attrs["complete"]
    again = stored(store)
    for name in ARRAYS:
        assert np.array_equal(again[name], reference[name]), name
        assert again[name].tobytes() == reference[name].tobytes()


@pytest.mark.slow
def test_two_processes_write_disjoint_shards_of_one_store(tmp_path, reference):
    store = tmp_path / "s.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    shards = [subprocess.Popen([sys.executable, "-m", "tests.activations.kill_and_resume", str(store), str(i), "2"],
                               env=env, cwd=REPO, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for process in shards:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["complete"]
    written = stored(store)
    for name in ARRAYS:
        assert written[name].tobytes() == reference[name].tobytes(), name


def test_a_store_from_another_configuration_is_refused_naming_what_differs(tmp_path, model_and_tokens):
    model, tokens = model_and_tokens
    store = str(tmp_path / "s.zarr")
    cache_activations(model, tokens, store=store, **CACHE_PARAMS)
    with pytest.raises(ConfigError, match=r"^store: .*hooks: store has \['blocks.0.hook_resid_post'"):
        cache_activations(model, tokens, store=store, **{**CACHE_PARAMS, "hooks": ["blocks.1.hook_resid_post"]})
    other_model, _ = tiny_model_and_tokens()
    with torch.no_grad():
        other_model.embed.W_E.add_(1.0)
    with pytest.raises(ConfigError, match=r"^store: .*model: store has"):
        cache_activations(other_model, tokens, store=store, **CACHE_PARAMS)


def test_the_model_fingerprint_does_not_depend_on_torchs_threads_and_sees_one_changed_weight():
    # A float64 sum of each tensor changed with the thread count (on this 16M-value draw, seed 2: in its
    # last digit between 1 and 2 threads here), so a store resumed under another OMP_NUM_THREADS
    # was refused as another model's; the integer sum of the values' bits is exact.
    import torch

    from interp_pipeline.activations.model_forward import weights_fingerprint

    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.randn(16_000_000, generator=torch.Generator().manual_seed(2)))
    model.register_buffer("mask", torch.ones(5, dtype=torch.bool))
    threads = torch.get_num_threads()
    try:
        fingerprints = []
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            fingerprints.append(weights_fingerprint(model))
    finally:
        torch.set_num_threads(threads)
    assert fingerprints[0] == fingerprints[1] == fingerprints[2]
    assert fingerprints[0]["n_values"] == 16_000_005
    with torch.no_grad():
        model.weight[12_345_678] += 1e-3  # one value, past the first 64 the fingerprint also keeps
    assert weights_fingerprint(model)["weights_fingerprint"] != fingerprints[0]["weights_fingerprint"]


@pytest.fixture(params=["config-built", "gpt2 Bridge"])
def two_block_model(request, model_and_tokens, tmp_path, monkeypatch):
    """The config-built toy (a HookedTransformer, or on TransformerLens 4 a native Bridge) and a
    Bridge of a tiny GPT-2 checkpoint, both two blocks deep."""
    model, tokens = model_and_tokens
    if request.param == "gpt2 Bridge":
        from interp_pipeline.models import hub
        from tests.support.tiny_bridges import save_tiny

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        model = hub.load_hugging_face(str(save_tiny("gpt2", tmp_path / "gpt2")), revision=None, device="cpu",
                                      dtype="float32")
        tokens = tokens % model.cfg.d_vocab
    assert len(model.blocks) == 2
    return model, tokens


def test_the_forward_passes_stop_at_the_deepest_hooks_block(two_block_model):
    # The shape probe's 3-token forward once ran the whole model and the unembedding (most of a
    # cache run's set-up), and hooks of the last block were cached with the unembedding run too.
    from interp_pipeline.activations.model_forward import hook_activations, hook_row_shapes, stop_at_layer_for
    from interp_pipeline.common.tl_version import is_hooked_transformer

    model, tokens = two_block_model
    _, full = model.run_with_cache(tokens[:1, :3], names_filter=["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"])
    ran = []
    handles = [module.register_forward_hook(lambda *_, name=name: ran.append(name))
               for name, module in (("block 1", model.blocks[1]), ("unembed", model.unembed))]
    try:
        assert hook_row_shapes(model, tokens, ["blocks.0.hook_resid_post"]) == {
            "blocks.0.hook_resid_post": list(full["blocks.0.hook_resid_post"].shape[2:])}
        assert ran == []
        assert hook_row_shapes(model, tokens, ["blocks.1.attn.hook_z"]) == {
            "blocks.1.attn.hook_z": list(full["blocks.1.attn.hook_z"].shape[2:])}
        # The last block's hook: a HookedTransformer stops before the unembedding; a Bridge cannot
        # (stop_at_layer=n_layers is raised by no block), so there the whole model runs.
        last_block_run = ["block 1"] if is_hooked_transformer(model) else ["block 1", "unembed"]
        assert ran == last_block_run
        ran.clear()
        first, last = ["blocks.0.hook_resid_post"], ["blocks.1.attn.hook_z"]
        cached = hook_activations(model, tokens[:2], first, stop_at_layer_for(model, first))
        assert ran == []  # the caching forward too
        torch.testing.assert_close(cached[first[0]], model.run_with_cache(tokens[:2], names_filter=first)[1][first[0]])
        ran.clear()
        hook_activations(model, tokens[:2], last, stop_at_layer_for(model, last))
        assert ran == last_block_run
    finally:
        for handle in handles:
            handle.remove()


def test_unknown_hook_and_per_query_hooks_are_refused(tmp_path, model_and_tokens):
    model, tokens = model_and_tokens
    with pytest.raises(ConfigError, match=r"did you mean 'blocks.0.hook_resid_post'"):
        cache_activations(model, tokens, store=str(tmp_path / "a"), hooks=["blocks.0.hook_resid_pst"])
    with pytest.raises(ConfigError, match="one activation per token"):
        cache_activations(model, tokens, store=str(tmp_path / "b"), hooks=["blocks.0.attn.hook_pattern"])


def test_a_failed_write_fails_the_stage_and_leaves_the_store_resumable(tmp_path, model_and_tokens, monkeypatch):
    from interp_pipeline.activations import writer

    model, tokens = model_and_tokens
    store = str(tmp_path / "s.zarr")
    original = writer.ChunkWriter._flag_done

    def full_disk(self, chunk):
        if chunk == 2:
            raise OSError(28, "No space left on device")
        original(self, chunk)

    monkeypatch.setattr(writer.ChunkWriter, "_flag_done", full_disk)
    with pytest.raises(RuntimeError, match="No space left on device"):
        cache_activations(model, tokens, store=store, **CACHE_PARAMS)
    assert not zarr.open_group(store, mode="r").attrs["complete"]
    monkeypatch.setattr(writer.ChunkWriter, "_flag_done", original)
    assert cache_activations(model, tokens, store=store, **CACHE_PARAMS)["complete"]


def test_memory_stays_bounded_when_the_token_budget_grows_tenfold(tmp_path):
    # Activations wide enough (2 hooks x 256 floats, 2 KiB a row) that holding the store's
    # rows in memory would dwarf the plan's index arrays, which do grow with the budget
    # (a few int32 per row). Peaks are compared after a first call, so one-time
    # allocations (imports, codec set-up) count in neither.
    peaks = {}
    for n_sequences in (4, 40, 400):
        model, tokens = tiny_model_and_tokens(n_sequences=n_sequences, seq_len=16, d_model=256)
        tracemalloc.start()
        cache_activations(model, tokens, store=str(tmp_path / f"s{n_sequences}.zarr"), hooks=HOOKS,
                          batch_size_prompts=8, chunk_rows=64)
        peaks[n_sequences] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    added_rows = (400 - 40) * 16
    row_bytes = 2 * 256 * 4
    assert peaks[400] - peaks[40] < 0.1 * added_rows * row_bytes, peaks  # 10x the rows: < 10% of their bytes


def test_an_fsspec_url_works_like_a_path(model_and_tokens, tmp_path):
    from interp_pipeline.activations.reader import ActivationStore

    model, tokens = model_and_tokens
    url = f"file://{tmp_path}/via_fsspec.zarr"
    out = cache_activations(model, tokens, store=url, **CACHE_PARAMS)
    store = ActivationStore.open(out["store_uri"])
    _, cache = model.run_with_cache(tokens[:1], names_filter=HOOKS)
    rows = store.rows_of_sequence(0)
    assert torch.equal(store.read(HOOKS[0], rows), cache[HOOKS[0]][0])
    assert store.find_tokens(tokens[0, 3:7].tolist()).tolist() == rows[3:7].tolist()
