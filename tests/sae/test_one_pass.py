"""Several SAEs from one pass (train_sae with sae.variants): the batches and results of separate runs,
each batch read once, a child run per SAE in a real MLflow store, resume, and config errors."""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from mlflow.tracking import MlflowClient  # noqa: E402
from sae_lens import SAE  # noqa: E402
from sae_lens.training.sae_trainer import SAETrainer  # noqa: E402

from interp_pipeline.activations.reader import ActivationStore  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages  # noqa: E402
from interp_pipeline.storage.cache_codecs import codec_for  # noqa: E402
from interp_pipeline.stages.cache_activations import cache_activations  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402
from interp_pipeline.stages.sae_eval import evaluate_sae  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402

HOOK = "blocks.0.hook_resid_post"  # d_model 16
# 360 rows; 40 held out; 5 steps of 64.
BASE = dict(hook=HOOK, d_sae=32, train_batch_size_tokens=64, training_tokens=320, eval_tokens=40, log_every=2,
            lr=1e-3, l1_coefficient=1.0, device="cpu", seed=0)
# A sweep over l1, width and architecture, and a learning rate of its own (MultiSAETrainer alone shares one).
VARIANTS = [{"l1_coefficient": 1.0}, {"l1_coefficient": 10.0, "d_sae": 64}, {"architecture": "topk", "k": 4},
            {"name": "fast", "lr": 3e-3}]
NAMES = ["l1_coefficient-1.0", "l1_coefficient-10.0_d_sae-64", "architecture-topk_k-4", "fast"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, tokens = tiny_model_and_tokens()
    store = cache_activations(model, tokens, hooks=[HOOK], chunk_rows=48, batch_size_prompts=8,
                              store=str(tmp_path_factory.mktemp("store") / "acts.zarr"))
    return model, tokens, store


@pytest.fixture
def seen(monkeypatch):
    """What each SAE's trainer was given at each step (SAETrainer.step, SAELens's own seam), and the
    number of batches the store yielded."""
    record = {"steps": {}, "store_batches": 0}
    step, iter_batches = SAETrainer.step, ActivationStore.iter_batches

    def recording_step(self, batch):
        record["steps"].setdefault(getattr(self, "name", "") or "single", []).append(
            hashlib.sha1(batch.numpy().tobytes()).hexdigest())
        return step(self, batch)

    def counting_batches(self, *args, **kwargs):
        for item in iter_batches(self, *args, **kwargs):
            record["store_batches"] += 1
            yield item

    monkeypatch.setattr(SAETrainer, "step", recording_step)
    monkeypatch.setattr(ActivationStore, "iter_batches", counting_batches)
    return record


def test_one_pass_gives_each_sae_the_batches_and_weights_of_a_separate_run(setup, seen, tmp_path):
    _, _, store = setup
    saes = train_sae(store=store, variants=VARIANTS, **BASE)
    assert list(saes) == NAMES
    together, read_together = dict(seen["steps"]), seen["store_batches"]
    assert read_together == 5  # each batch read once for all four SAEs
    for name, variant in zip(NAMES, VARIANTS):
        seen["steps"].clear()
        seen["store_batches"] = 0
        alone = train_sae(store=store, **alone_settings(variant))
        assert seen["store_batches"] == 5
        assert together[name] == seen["steps"]["single"], name  # the same 5 batches, in the same order
        assert saes[name].cfg.d_sae == alone.cfg.d_sae
        for param, value in alone.state_dict().items():
            torch.testing.assert_close(saes[name].state_dict()[param], value, rtol=0, atol=0, msg=f"{name} {param}")
    # The variants really differ: the fast one's weights moved further than its lr=1e-3 twin's.
    assert not torch.equal(saes["fast"].W_enc, saes["l1_coefficient-1.0"].W_enc)

    # Cached as one SAELens folder per SAE, names kept in order.
    codec = codec_for(saes)
    assert codec.name == "sae_lens_saes"
    codec.save(saes, tmp_path / "saes")
    loaded = codec.load(tmp_path / "saes")
    assert list(loaded) == NAMES
    assert isinstance(SAE.load_from_disk(str(tmp_path / "saes" / "1")), SAE)
    torch.testing.assert_close(loaded["fast"].W_dec, saes["fast"].W_dec)


def test_each_sae_has_its_own_child_run_in_mlflow(setup, tmp_path):
    model, tokens, store = setup
    tracking = MlflowTracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.experiment_id("one-pass")
    stage_run = tracking.start_run(experiment, "sae", {"stage": "sae"})
    tracker = RecordingTracker(stage_run, tmp_path / "artifacts")
    saes = train_sae(store=store, variants=VARIANTS[:2], tracker=tracker, **BASE)
    eval_run = tracking.start_run(experiment, "eval", {"stage": "eval"})
    metrics = evaluate_sae(model, saes, tokens[-4:], tracker=RecordingTracker(eval_run, tmp_path / "eval"),
                           compute_kl=False)
    stage_run.end("FINISHED")
    eval_run.end("FINISHED")

    client = MlflowClient(tracking.uri)
    children = {run.info.run_name: run for run in client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{stage_run.run_id}'")}
    assert sorted(children) == sorted(NAMES[:2])
    for name, run in children.items():
        assert run.info.status == "FINISHED" and run.data.tags["child"] == name
        assert run.data.params["l1_coefficient"] == str(VARIANTS[NAMES.index(name)]["l1_coefficient"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "metrics/l0")] == [2, 4, 5]
        assert {a.path for a in client.list_artifacts(run.info.run_id, "sae")} >= {"sae/cfg.json",
                                                                                   "sae/sae_weights.safetensors"}
    # The stage's own run holds each SAE's results under its name (what a cached stage shows).
    stage_metrics = client.get_run(stage_run.run_id).data.metrics
    assert stage_metrics["saes"] == 2
    for name in NAMES[:2]:
        assert stage_metrics[f"{name}/eval/explained_variance"] == \
            children[name].data.metrics["eval/explained_variance"]

    eval_children = {run.info.run_name: run for run in client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{eval_run.run_id}'")}
    assert sorted(eval_children) == sorted(NAMES[:2])
    for name, run in eval_children.items():
        assert run.data.metrics["sparsity/l0"] == metrics[f"{name}/sparsity/l0"]
        assert "feature_density.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


class FailAtStep(NullRun):
    """A child run whose metric logging fails at one step: the process dies mid-pass."""

    def __init__(self, step):
        self.step = step

    def start_child(self, name, tags):
        parent = self

        class Child(NullRun):
            def log_metrics(self, metrics, step=None):
                if name == NAMES[1] and step == parent.step:
                    raise RuntimeError("died")

        return Child()


def alone_settings(variant):
    """What a separate run of ``variant`` is given: BASE's settings that its architecture reads, and its own."""
    base = {k: v for k, v in BASE.items() if not (k == "l1_coefficient" and variant.get("architecture") == "topk")}
    return {**base, **{k: v for k, v in variant.items() if k != "name"}}


def test_a_failed_pass_resumes_from_its_checkpoint_and_ends_as_an_unbroken_one(setup, tmp_path):
    _, _, store = setup
    params = {**BASE, "log_every": 1, "checkpoint_every": 2, "variants": VARIANTS[:2]}
    with pytest.raises(RuntimeError, match="died"):
        train_sae(store=store, workdir=tmp_path / "work", tracker=RecordingTracker(FailAtStep(3), tmp_path / "a"),
                  **params)
    tracker = RecordingTracker(NullRun(), tmp_path / "b")
    resumed = train_sae(store=store, workdir=tmp_path / "work", tracker=tracker, **params)
    unbroken = train_sae(store=store, **params)
    for name in NAMES[:2]:
        for param, value in unbroken[name].state_dict().items():
            torch.testing.assert_close(resumed[name].state_dict()[param], value, msg=f"{name} {param}")
    assert tracker.last["steps"] == 5 and tracker.last["resumed_from_step"] == 2


def test_variant_errors_name_the_entry_and_key(setup):
    load_stage_modules()
    preflight = registered_stages()["train_sae"].preflight
    with pytest.raises(ConfigError, match=r"^variants\[1\]\.train_batch_size_tokens: expected the same value for "
                                          r"every SAE of one pass"):
        preflight({"variants": [{"lr": 1e-3}, {"train_batch_size_tokens": 128}]})
    with pytest.raises(ConfigError, match=r"^variants\[0\]\.l1_coeficient: .*did you mean 'l1_coefficient'"):
        preflight({"variants": [{"l1_coeficient": 3}]})
    with pytest.raises(ConfigError, match=r"^variants\[0\]\.architecture: .*found 'topkk'"):
        preflight({"variants": [{"architecture": "topkk"}]})
    with pytest.raises(ConfigError, match=r"^variants\[1\]\.name: .*'lr-0.001' twice"):
        preflight({"variants": [{"lr": 1e-3}, {"lr": 1e-3}]})
