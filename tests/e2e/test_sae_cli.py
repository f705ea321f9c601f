"""sae_train through the real CLI on the toy model: cache, train with SAELens, evaluate, metrics in MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli
from tests.e2e.test_cli import parents, sqlite_uri

pytestmark = pytest.mark.slow

# Smaller than conf/sae_setup/toy_induction.yaml: 768 sequences of 49 tokens, the last 64
# held out (3136 rows), 40 steps of 512 tokens; the toy model trains for at most 600 steps, once
# per session (the toy_models fixture, tests/conftest.py), shared with tests/e2e/test_sae_features_cli.py.
SMALL = ["+experiment=sae_train", "model=toy_induction", "model.train.steps=600",
         "data.params.n_sequences=768", "sae.train_batch_size_tokens=512", "sae.training_tokens=20480",
         "sae.eval_tokens=3136", "sae.lr_decay_steps=8", "sae.l1_warm_up_steps=2", "sae_eval.batch_size_prompts=32",
         "runner.check_expect=false"]

EVAL_METRICS = (
    "reconstruction_quality/explained_variance", "reconstruction_quality/mse", "reconstruction_quality/cossim",
    "sparsity/l0", "sparsity/l1", "sparsity/dead_features_fraction", "sparsity/dense_features_fraction",
    "shrinkage/l2_ratio", "model_performance_preservation/ce_loss_score",
    "model_performance_preservation/ce_loss_with_sae", "model_performance_preservation/ce_loss_without_sae",
    "model_performance_preservation/ce_loss_with_ablation", "model_behavior_preservation/kl_div_with_sae",
    "model_behavior_preservation/kl_div_with_ablation", "model_behavior_preservation/kl_div_score",
)


def test_sae_train_on_the_toy_model_end_to_end(outputs, toy_models):
    toy_models.outputs_with(SMALL, outputs)
    done = run_cli(SMALL, outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[6/6] eval" in done.stdout
    assert "cached" in next(line for line in done.stdout.splitlines() if line.startswith("[1/6] model"))
    runs, all_runs = parents(sqlite_uri(outputs), "sae_train")
    metrics = runs[0].data.metrics
    assert {f"eval.{name}" for name in EVAL_METRICS} <= set(metrics)
    assert metrics["heldout.heldout_sequences"] == 64 and metrics["heldout.heldout_tokens"] == 3136
    assert metrics["eval.token_stats/total_tokens_eval_reconstruction"] == 3136
    assert metrics["sae.steps"] == 40
    assert metrics["eval.reconstruction_quality/explained_variance"] > 0.5
    assert 0 < metrics["eval.sparsity/l0"] < 512
    # Splicing the SAE in costs less loss than zero-ablating the residual stream.
    ce = {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith("eval.model_performance_preservation/")}
    assert ce["ce_loss_without_sae"] <= ce["ce_loss_with_sae"] < ce["ce_loss_with_ablation"]
    assert 0 < metrics["eval.model_performance_preservation/ce_loss_score"] <= 1.0 + 1e-6
    eval_run = next(r for r in all_runs if r.data.tags.get("stage") == "eval")
    assert eval_run.data.tags["sae.hook"] == "blocks.1.hook_resid_pre"
    artifacts = {a.path for a in MlflowClient(sqlite_uri(outputs)).list_artifacts(eval_run.info.run_id)}
    assert {"feature_density.png", "feature_density.json"} <= artifacts
    # The trained SAE is an artifact of its stage's run, in the folder SAELens loads.
    sae_run = next(r for r in all_runs if r.data.tags.get("stage") == "sae")
    client = MlflowClient(sqlite_uri(outputs))
    assert {a.path for a in client.list_artifacts(sae_run.info.run_id, "sae")} >= {"sae/cfg.json",
                                                                                    "sae/sae_weights.safetensors"}


def test_several_saes_from_one_pass_and_a_streamed_sae_through_the_cli(outputs, toy_models):
    """sae.variants: a nested MLflow run per SAE under the sae and eval stages; then, with no cache, the
    SAE fed the model's activations as they are computed (the toy model served from the stage cache)."""
    toy_models.outputs_with(SMALL, outputs)
    variants = "sae.variants=[{l1_coefficient: 1}, {architecture: topk, k: 8}]"
    done = run_cli([*SMALL, variants], outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    runs, all_runs = parents(sqlite_uri(outputs), "sae_train")
    metrics = runs[0].data.metrics
    names = ("l1_coefficient-1", "architecture-topk_k-8")
    for name in names:
        assert metrics[f"sae.{name}/eval/explained_variance"] > 0.3
        assert 0 < metrics[f"eval.{name}/model_performance_preservation/ce_loss_score"] <= 1.0 + 1e-6
    assert metrics["eval.architecture-topk_k-8/sparsity/l0"] == pytest.approx(8, abs=0.5)
    by_id = {r.info.run_id: r for r in all_runs}
    nested = {(by_id[r.data.tags["mlflow.parentRunId"]].data.tags.get("stage"), r.info.run_name)
              for r in all_runs if by_id.get(r.data.tags.get("mlflow.parentRunId"), runs[0]) is not runs[0]}
    assert nested == {(stage, name) for stage in ("sae", "eval") for name in names}

    streamed = run_cli([a.replace("sae_train", "sae_train_streamed") for a in SMALL], outputs, timeout=600)
    assert streamed.returncode == 0, streamed.stdout + streamed.stderr
    assert "cached" in next(line for line in streamed.stdout.splitlines() if line.startswith("[1/5] model"))
    runs, _ = parents(sqlite_uri(outputs), "sae_train_streamed")
    metrics = runs[0].data.metrics
    assert metrics["sae.steps"] == 40 and metrics["sae.eval/tokens"] == 3136
    assert metrics["heldout.heldout_sequences"] == 64
    assert metrics["eval.reconstruction_quality/explained_variance"] > 0.5
