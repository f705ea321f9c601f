"""A store written in shards by several jobs: a reader of an unfinished one is told which shards are
missing; an unsharded run does not quietly write the other shards' share; a job that writes one
shard may not read the whole store (exit 2 before any work)."""

from __future__ import annotations

import pytest

from interp_pipeline.activations.layout import unfinished_shards
from interp_pipeline.activations.reader import ActivationStore, IncompleteStoreError
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.stages.cache_activations import cache_activations
from tests.pipeline.test_preflight_before_work import run_and_capture
from tests.support.models import CACHE_PARAMS, tiny_model_and_tokens


def test_unfinished_shards_are_those_with_a_chunk_not_done():
    done = [True] * 15
    done[7] = done[14] = False  # 15 chunks in 4 shards: 0-2, 3-6, 7-10, 11-14
    assert unfinished_shards(done, 4) == [2, 3]
    assert unfinished_shards([True] * 15, 4) == []


def test_a_store_with_missing_shards_says_which_and_is_not_finished_by_an_unsharded_run(tmp_path):
    model, tokens = tiny_model_and_tokens()
    url = str(tmp_path / "s.zarr")
    out = cache_activations(model, tokens, store=url, shard_index=1, num_shards=3, **CACHE_PARAMS)
    assert not out["complete"]
    with pytest.raises(IncompleteStoreError) as info:
        ActivationStore.open(url)
    assert str(info.value) == (
        f"activation store {url} is incomplete: 5 of 15 chunks written; shards 0,2 of 3 not finished (write them "
        "with cache.shard_index=0,2 cache.num_shards=3, or wait for the jobs writing them) "
        "(or open with allow_incomplete=True)")
    with pytest.raises(ConfigError) as refused:
        cache_activations(model, tokens, store=url, **CACHE_PARAMS)
    assert str(refused.value) == (f"num_shards: the store at {url} is written in shards: shards 0,2 of 3 not "
                                  "finished (write them with cache.shard_index=0,2 cache.num_shards=3, or wait for "
                                  "the jobs writing them)")
    cache_activations(model, tokens, store=url, shard_index=2, num_shards=3, **CACHE_PARAMS)
    with pytest.raises(IncompleteStoreError, match=r"shard 0 of 3 not finished \(write it with cache.shard_index=0 "):
        ActivationStore.open(url)


def test_a_job_writing_one_shard_may_not_read_the_whole_store(outputs, caplog):
    line = run_and_capture(outputs, caplog, ["+experiment=sae_train", "model=toy_induction",
                                             "cache.shard_index=1", "cache.num_shards=4"])
    assert line == ("error: cache.num_shards: expected 1 when stage 'sae' reads the store in the same job, found 4 "
                    "(this job writes only shard 1); write the shards with a pipeline that ends at the store "
                    "(e.g. +experiment=cache_activations), then run this one without num_shards")


def test_a_store_url_fsspec_cannot_open_is_refused_before_work(monkeypatch, tmp_path):
    from interp_pipeline.activations.caching import check_cache_settings
    from interp_pipeline.activations.config import CacheConfig
    from interp_pipeline.config.settings import settings_object

    def check(params):
        check_cache_settings(settings_object(CacheConfig, params))

    with pytest.raises(ConfigError, match=r"^store: expected a path or a URL fsspec can open, found 'nosuch://b/s.zarr' "
                                          r"\(Protocol not known: nosuch\)$"):
        check({**CACHE_PARAMS, "store": "nosuch://b/s.zarr"})
    # s3fs is installed with the dev extra, so the protocol is known; the object-store pre-flight then
    # asks for credentials (none here: no variables, no credentials file, no instance metadata).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match=r"^store: the object store s3://bucket/s\.zarr cannot be used: found no credentials"):
        check({**CACHE_PARAMS, "store": "s3://bucket/s.zarr"})


def test_the_size_of_a_store_is_read_while_another_shard_writes_it(tmp_path):
    """Seen in CI: a shard finishing first sized the store while others wrote it, and zarr's
    ``*.partial`` temporaries, renamed away between the listing and the size, ended the job.
    A race: the old code failed about 1 in 100 sizings of this store, so some hundreds are asked."""
    import threading
    import time

    import numpy as np
    import zarr

    from interp_pipeline.activations.writer import store_bytes

    url = str(tmp_path / "s.zarr")
    array = zarr.create_array(url, shape=(256, 16), chunks=(1, 16), dtype="float32", fill_value=0)
    stop = threading.Event()

    def write() -> None:
        rows = np.ones((64, 16), dtype="float32")
        while not stop.is_set():
            for start in range(0, 256, 64):
                array[start:start + 64] = rows

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    sizes, deadline = [], time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            sizes.append(store_bytes(url))
    finally:
        stop.set()
        writer.join()
    assert len(sizes) > 50 and min(sizes) > 0
