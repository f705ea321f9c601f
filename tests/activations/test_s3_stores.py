"""Activation stores on object storage (s3:// through fsspec and s3fs), against a real S3-compatible
server on 127.0.0.1 (moto in server mode): written, resumed after kill -9, written by concurrent
shards that wait for shard 0 to create the store, read by train_sae, checked for damage, and equal
to the same store written to a local path."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr

from interp_pipeline.activations.reader import ActivationStore
from interp_pipeline.activations.writer import CREATING, PAUSE_ENV
from interp_pipeline.stages.cache_activations import cache_activations
from interp_pipeline.stages.sae import train_sae
from tests.activations.test_cache_stage import ARRAYS, run_script, stored
from tests.conftest import REPO
from tests.support.models import CACHE_PARAMS, HOOKS, tiny_model_and_tokens
from tests.support.s3 import BUCKET, moto_s3, s3_filesystem

pytest.importorskip("s3fs")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto") / "server.log") as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def model_and_tokens():
    return tiny_model_and_tokens()


@pytest.fixture(scope="module")
def local(tmp_path_factory, model_and_tokens):
    """The store written in one go to a local path: what every S3 store here must equal."""
    path = tmp_path_factory.mktemp("local") / "s.zarr"
    out = cache_activations(*model_and_tokens, store=str(path), **CACHE_PARAMS)
    return out, stored(path)


def assert_equal_to_local(url: str, local, arrays: list[str] = ARRAYS) -> None:
    group = zarr.open_group(url, mode="r")
    assert group.attrs["complete"]
    for name in arrays:
        assert group[name][:].tobytes() == local[1][name][:].tobytes(), name


def test_a_store_on_s3_is_written_and_read_like_a_local_one(s3, model_and_tokens, local):
    url = f"s3://{BUCKET}/once.zarr"
    out = cache_activations(*model_and_tokens, store=url, **CACHE_PARAMS)
    assert out["complete"] and out["store_uri"] == url
    assert_equal_to_local(url, local)
    store = ActivationStore.open(url)
    assert store.n_rows == 360 and store.verify() == []
    assert store.nbytes_on_disk() == sum(s3_filesystem().du(f"{BUCKET}/once.zarr", total=False).values())
    # No zarr temporaries on S3 (each object is one PUT): nothing named *.partial, ever.
    assert not [key for key in s3_filesystem().find(f"{BUCKET}/once.zarr") if key.endswith(".partial")]


def test_train_sae_reads_a_store_on_s3_as_it_reads_the_local_one(s3, model_and_tokens, local):
    url = f"s3://{BUCKET}/for_sae.zarr"
    out = cache_activations(*model_and_tokens, store=url, **CACHE_PARAMS)
    params = dict(hook=HOOKS[0], d_sae=32, train_batch_size_tokens=64, training_tokens=256, eval_tokens=48,
                  log_every=2, lr=3e-3, l1_coefficient=1.0, device="cpu", seed=0)
    from_s3 = train_sae(store=out, **params)
    from_disk = train_sae(store=local[0], **params)
    for name, value in from_disk.state_dict().items():
        assert torch.equal(from_s3.state_dict()[name], value), name


def test_damage_on_s3_is_named_by_verify_and_by_reads(s3, model_and_tokens):
    url = f"s3://{BUCKET}/damaged.zarr"
    cache_activations(*model_and_tokens, store=url, **CACHE_PARAMS)
    fs = s3_filesystem()
    resid = f"{BUCKET}/damaged.zarr/activations/{HOOKS[0]}/c"
    fs.rm(f"{resid}/3/0")  # a chunk flagged done, deleted
    flipped = bytearray(fs.cat(f"{resid}/5/0"))
    flipped[len(flipped) // 2] ^= 0xFF
    fs.pipe(f"{resid}/5/0", bytes(flipped))  # a chunk whose bytes changed
    store = ActivationStore.open(url)
    problems = {(b.array, b.chunk): b.problem for b in store.verify()}
    assert problems == {(f"activations/{HOOKS[0]}", 3): "missing (a chunk flagged done has no object in the store)",
                        (f"activations/{HOOKS[0]}", 5): "CRC32C checksum mismatch (the stored bytes changed since "
                                                        "they were written)"}
    with pytest.raises(ValueError, match=rf"activation store {url} is damaged: array 'activations/{HOOKS[0]}' chunk 5"):
        store.read(HOOKS[0], slice(5 * 24, 6 * 24))


def test_a_store_on_s3_killed_mid_write_resumes_to_the_local_store(s3, model_and_tokens, local):
    url = f"s3://{BUCKET}/resumed.zarr"
    killed = run_script(url, kill_at="flag:6")
    assert killed.returncode == -9, killed.stderr
    group = zarr.open_group(url, mode="r")
    assert not group.attrs["complete"] and group["chunk_done"][6] == 0 and group["chunk_done"][5] == 1
    out = cache_activations(*model_and_tokens, store=url, **CACHE_PARAMS)  # the same command again
    assert out["complete"]
    assert_equal_to_local(url, local)


def test_shards_on_s3_wait_for_shard_0_to_create_the_store_and_equal_the_local_one(s3, model_and_tokens, local,
                                                                                     tmp_path):
    """Shard 1 starts first and waits; shard 0 is killed while creating the store (the group exists,
    marked as being created), and shard 1 still waits, until shard 0 runs again and creates it."""
    url = f"s3://{BUCKET}/sharded.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    script = [sys.executable, "-m", "tests.activations.kill_and_resume", url]
    shard_1 = subprocess.Popen([*script, "1", "2"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    paused = tmp_path / "creating"
    shard_0 = subprocess.Popen([*script, "0", "2"], env={**env, PAUSE_ENV: str(paused)}, cwd=REPO,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not paused.exists():
            assert shard_0.poll() is None, shard_0.communicate()[1]
            assert time.monotonic() < deadline, "shard 0 never began creating the store"
            time.sleep(0.1)
        assert zarr.open_group(url, mode="r").attrs[CREATING]  # half-made: no arrays' attributes yet
        shard_0.kill()
        shard_0.wait(10)
        time.sleep(1.0)
        assert shard_1.poll() is None, shard_1.communicate()[1]  # it did not take the half-made store
        out = cache_activations(*model_and_tokens, store=url, shard_index=0, num_shards=2, **CACHE_PARAMS)
        _, stderr = shard_1.communicate(timeout=300)
    finally:
        for process in (shard_0, shard_1):
            if process.poll() is None:
                process.kill()
    assert shard_1.returncode == 0, stderr
    assert f"shard 1: waiting for shard 0 to create the store at {url}" in stderr
    assert out["n_rows"] == 360
    assert_equal_to_local(url, local)
    assert np.asarray(zarr.open_group(url, mode="r")["chunk_done"][:]).all()


SHARDED = ["+experiment=cache_activations", "model=tiny", "data=random_tokens", "seed=0",
           "cache.hooks=[blocks.0.hook_resid_post]", "cache.chunk_rows=256"]


def test_a_sharded_joblib_sweep_writes_one_store_on_s3_equal_to_the_local_one(s3, outputs, tmp_path):
    """The README's recipe (`-m cache.shard_index='range(4)' cache.num_shards=4` on the joblib launcher),
    with 2 shards: every job imports torch and transformer_lens, which is most of this test's CPU time."""
    from mlflow.tracking import MlflowClient

    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.experiments.run import prepare
    from interp_pipeline.runner.runner import PipelineRunner
    from interp_pipeline.runner.stage_cache import StageCache
    from tests.conftest import run_cli

    url = f"s3://{BUCKET}/sweep.zarr"
    done = run_cli(["-m", *SHARDED, f"cache.store={url}", "cache.shard_index=range(2)", "cache.num_shards=2",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.experiment_name=shards"], outputs)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = tmp_path / "local.zarr"
    spec = prepare(compose([*SHARDED, f"cache.store={reference}"])).spec
    PipelineRunner(spec, StageCache(tmp_path / "cache")).run()
    arrays = ["activations/blocks.0.hook_resid_post", "token_ids", "sequence", "position", "chunk_done"]
    assert_equal_to_local(url, (None, zarr.open_group(str(reference), mode="r")), arrays)
    store = ActivationStore.open(url)
    assert store.n_chunks == 8 and store.attrs["num_shards"] == 2
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shards").experiment_id], "tags.stage = 'cache'")
    assert sorted(r.data.params["shard_index"] for r in runs) == ["0", "1"]
    assert sum(r.data.metrics["tokens_written"] for r in runs) == 64 * 32
    tokens = client.search_runs([client.get_experiment_by_name("shards").experiment_id], "tags.stage = 'tokens'")
    assert sorted(r.data.tags["cached"] for r in tokens) == ["false", "true"]  # shared, computed once
