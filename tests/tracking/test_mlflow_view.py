"""The MLflow view (issue 17): run names, pipeline order, expect failures, datasets, logged models,
read back from a real SQLite store after a real run of tiny stages."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.run import Invocation, launch
from interp_pipeline.common.exit_status import EXIT_EXPECT
from interp_pipeline.runner.stage_cache import StageCache
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking
from interp_pipeline.tracking.run_names import parent_run_name, stage_run_name, swept_keys

HOOK = "blocks.0.hook_resid_post"
STAGES = [
    {"name": "model", "fn": "load_model", "params": {"source": "config", "seed": 0, "device": "cpu", "cfg": {
        "n_layers": 1, "d_model": 16, "d_head": 4, "n_heads": 4, "d_mlp": 32, "d_vocab": 50, "n_ctx": 16,
        "act_fn": "gelu", "normalization_type": "LN"}}},
    {"name": "tokens", "fn": "random_tokens", "inputs": {"model": "model"},
     "params": {"n_sequences": 24, "seq_len": 16, "seed": 0}},
    {"name": "acts", "fn": "cache_activations", "inputs": {"model": "model", "tokens": "tokens"},
     "params": {"hooks": [HOOK], "chunk_rows": 64, "batch_size_prompts": 8}},
    {"name": "sae", "fn": "train_sae", "inputs": {"store": "acts"},
     "params": {"hook": HOOK, "d_sae": 32, "train_batch_size_tokens": 64, "training_tokens": 256, "eval_tokens": 64,
                "log_every": 2, "lr": 1e-3, "l1_coefficient": 1.0, "device": "cpu", "seed": 0}},
]
OVERRIDES = ["sae.l1_coefficient=1", "runner.force=false"]


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    """One run of model -> tokens -> activation store -> SAE, with an expect: the SAE cannot meet."""
    folder = tmp_path_factory.mktemp("view")
    outputs = folder / "outputs"
    pipeline = folder / "view.yaml"
    pipeline.write_text(yaml.safe_dump({"stages": STAGES}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTERP_PIPELINE_OUTPUTS", str(outputs))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = compose([f"pipeline={pipeline}", "++expect={sae.eval/l0: {max: -1}}"])
        status = launch(cfg, Invocation("view_test", outputs / "run", overrides=OVERRIDES)).status
        # Logging the models set MLflow's fluent URI for a moment, not the variable the next run would follow.
        assert "MLFLOW_TRACKING_URI" not in os.environ
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("view_test")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    stages = {r.data.tags["stage"]: r for r in runs if "stage" in r.data.tags}
    return status, client, parent, stages, StageCache(outputs / "cache")


@pytest.fixture
def tracking_uri(view):
    """``models:/`` URIs resolve in the fluent API's store, as in a notebook: point it at the run's."""
    from interp_pipeline.tracking.logged_models import fluent_store

    with fluent_store(view[1].tracking_uri):
        yield


def test_run_names_show_what_differs_and_stages_sort_in_pipeline_order(view):
    _, client, parent, stages, _ = view
    assert parent.info.run_name == "view_test sae.l1_coefficient=1 [expect failed]"
    assert parent.data.tags["hydra.overrides"] == " ".join(OVERRIDES)  # the full list stays a tag
    names = [r.info.run_name for r in stages.values()]
    assert sorted(names) == ["01 model", "02 tokens", "03 acts", "04 sae [expect failed]"]
    assert stages["acts"].data.tags["stage.index"] == "3"


def test_a_failed_expect_ends_the_parent_failed_and_tags_the_stage_that_missed(view):
    status, _, parent, stages, _ = view
    assert status == EXIT_EXPECT
    assert parent.info.status == "FAILED"
    assert parent.data.tags["expect.passed"] == "false" and parent.data.tags["expect.failed"] == "sae.eval/l0"
    assert stages["sae"].info.status == "FINISHED"  # the stage itself ran fine; its metric missed
    assert stages["sae"].data.tags["expect.failed"] == "sae.eval/l0"
    assert "expect.failed" not in stages["acts"].data.tags


def _inputs(run):
    return {(d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"]): d.dataset
            for d in run.inputs.dataset_inputs}


def test_token_datasets_and_activation_stores_are_logged_inputs_with_their_digests(view):
    _, _, _, stages, cache = view
    entry = cache.lookup("random_tokens", stages["tokens"].data.tags["cache_key"])
    file_digest = hashlib.sha256((entry.path / "tokens.safetensors").read_bytes()).hexdigest()[:16]
    produced = _inputs(stages["tokens"])[("tokens.tokens", "output")]
    assert produced.digest == file_digest
    assert json.loads(produced.profile) == {"sequences": 24, "positions": 16, "tokens": 384}
    assert json.loads(produced.source)["uri"].endswith("tokens.safetensors")
    acts = _inputs(stages["acts"])
    assert acts[("tokens.tokens", "tokens")].digest == file_digest  # the same dataset, read by the next stage
    store = acts[("acts.store", "output")]
    assert json.loads(store.profile) == {"n_rows": 384, "hooks": [HOOK]}
    assert _inputs(stages["sae"])[("acts.store", "store")].digest == store.digest
    assert len({store.digest, file_digest}) == 2 and len(store.digest) == 16


def test_the_trained_sae_and_the_model_are_logged_models_that_load_back(view, tracking_uri):
    import mlflow.pyfunc
    import torch

    _, _, _, stages, cache = view
    sae_uri = stages["sae"].data.tags["logged_model.sae"]
    loaded = mlflow.pyfunc.load_model(sae_uri)
    cached = cache.lookup("train_sae", stages["sae"].data.tags["cache_key"]).load_output("sae")
    sae = loaded.unwrap_python_model().module
    for name, tensor in cached.state_dict().items():
        assert torch.equal(sae.state_dict()[name], tensor), name
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    with torch.no_grad():
        expected = cached.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5)
    # The model stage is rebuilt from its config (never cached): logged from a copy its codec writes.
    model_uri = stages["model"].data.tags["logged_model.model"]
    logged = view[1].get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.experiment_id == stages["model"].info.experiment_id  # in the run's experiment, not "Default"
    assert logged.artifact_location.startswith(cache.root.parent.as_uri())  # beside the store, not in ./mlruns
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.predict(np.zeros((2, 16), np.int64)).shape == (2, 16, 50)
    # The cache entry keeps the SAE's tag: a later run served from the cache points at the same model.
    assert cache.lookup("train_sae", stages["sae"].data.tags["cache_key"]).record["tags"]["logged_model.sae"] == sae_uri


def test_a_model_over_the_size_limit_is_named_in_a_tag_not_logged(view):
    from interp_pipeline.stages.models import load_model

    tracking = MlflowTracking(view[1].tracking_uri, max_model_mb=0.001)
    run = tracking.start_run(tracking.experiment_id("limit"), "r", {})
    model = load_model(source="config", seed=0, device="cpu", cfg=STAGES[0]["params"]["cfg"])
    run.log_model("model", model, None)
    run.end("FINISHED")
    tags = tracking.client.get_run(run.run_id).data.tags
    assert "logged_model.model" not in tags
    assert tags["logged_model.model.not_logged"].endswith("MB > tracking.max_model_mb=0.001")
    assert not tracking.client.list_artifacts(run.run_id)


def test_parent_names_keep_the_swept_overrides_only():
    assert swept_keys(["+experiment=x", "sae.l1_coefficient=1,5,20", "seed=range(3)", "model=toy"]) == [
        "sae.l1_coefficient", "seed"]
    overrides = ["+experiment=sae_train", "model=toy_induction", "sae.l1_coefficient=5", "seed=1", "runner.force=true"]
    assert parent_run_name("sae_train", overrides, ["sae.l1_coefficient"]) == "sae_train sae.l1_coefficient=5"
    assert parent_run_name("sae_train", overrides) == "sae_train model=toy_induction sae.l1_coefficient=5 seed=1"
    long = parent_run_name("x", [f"data.params.prompts=[{'a' * 80}]"])
    assert len(long) < 50 and long.endswith("…")
    assert [stage_run_name(i, 12, "s") for i in (0, 11)] == ["01 s", "12 s"]
