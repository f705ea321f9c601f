"""The evaluate_sae and store_heldout_tokens stages: SAELens's run_evals values, on the rows training held out."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.activations.reader import ActivationStore  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.sae.evaluation import flatten_metrics  # noqa: E402
from interp_pipeline.stages.cache_activations import cache_activations  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402
from interp_pipeline.stages.heldout_tokens import store_heldout_tokens  # noqa: E402
from interp_pipeline.stages.sae_eval import evaluate_sae  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402

HOOK = "blocks.0.hook_resid_post"  # d_model 16
BOS = 0
SEQ_LEN = 12
# 30 sequences x 12 tokens = 360 rows; the last 48 rows (sequences 26-29) held out, 4 steps of 64.
EVAL_TOKENS = 48
TRAIN = dict(hook=HOOK, d_sae=32, train_batch_size_tokens=64, training_tokens=256, eval_tokens=EVAL_TOKENS,
             log_every=2, lr=3e-3, l1_coefficient=1.0, device="cpu", seed=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model, its tokens (BOS first), a store of one hook, and an SAE trained on all but its last 48 rows."""
    model, tokens = tiny_model_and_tokens(30, SEQ_LEN)
    tokens[:, 0] = BOS
    store = cache_activations(model, tokens, hooks=[HOOK], chunk_rows=48, batch_size_prompts=8,
                              store=str(tmp_path_factory.mktemp("store") / "acts.zarr"))
    sae = train_sae(store=store, **TRAIN)
    return model, tokens, store, sae


def test_heldout_sequences_are_those_no_training_row_came_from(setup):
    _, tokens, store, _ = setup
    heldout = store_heldout_tokens(tokens, store=store, eval_tokens=EVAL_TOKENS)
    torch.testing.assert_close(heldout, tokens[26:30])
    # 40 rows start inside sequence 26, which training saw part of: it is left out.
    torch.testing.assert_close(store_heldout_tokens(tokens, store=store, eval_tokens=40), tokens[27:30])


def test_heldout_errors_name_the_key(setup):
    _, tokens, store, _ = setup
    with pytest.raises(ConfigError, match=r"^eval_tokens: .*at least one whole sequence \(12 tokens\)"):
        store_heldout_tokens(tokens, store=store, eval_tokens=11)
    with pytest.raises(ConfigError, match=r"^inputs\.tokens: expected the token dataset .* was cached from"):
        store_heldout_tokens(tokens[:, :6], store=store, eval_tokens=EVAL_TOKENS)


def run_evals_reference(model, sae, heldout, batch_size, exclude):
    """SAELens's run_evals with SAELens's own ActivationsStore over the same sequences."""
    from datasets import Dataset
    from sae_lens.evals import get_eval_everything_config, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore

    sae.cfg.metadata.prepend_bos = False  # from_sae asks; the sequences carry their BOS already
    act_store = ActivationsStore.from_sae(model, sae, dataset=Dataset.from_dict({"input_ids": heldout.tolist()}),
                                          context_size=SEQ_LEN, streaming=False, store_batch_size_prompts=batch_size)
    n_batches = len(heldout) // batch_size
    config = get_eval_everything_config(batch_size_prompts=batch_size, n_eval_reconstruction_batches=n_batches,
                                        n_eval_sparsity_variance_batches=n_batches)
    return run_evals(sae, act_store, model, ActivationScaler(), config, exclude_special_tokens=exclude)


def test_evaluate_sae_agrees_with_sae_lens_run_evals(setup, tmp_path):
    model, tokens, store, sae = setup
    heldout = store_heldout_tokens(tokens, store=store, eval_tokens=EVAL_TOKENS)
    tracker = RecordingTracker(NullRun(), tmp_path / "artifacts")
    ours = evaluate_sae(model, sae, heldout, batch_size_prompts=2, exclude_special_tokens=[BOS], tracker=tracker)

    nested, per_feature = run_evals_reference(model, sae, heldout, 2, [BOS])
    reference = flatten_metrics(nested)
    for name in ("reconstruction_quality/explained_variance", "reconstruction_quality/mse",
                 "reconstruction_quality/cossim", "sparsity/l0", "sparsity/l1", "shrinkage/l2_ratio",
                 "model_performance_preservation/ce_loss_score", "model_performance_preservation/ce_loss_with_sae",
                 "model_performance_preservation/ce_loss_without_sae",
                 "model_performance_preservation/ce_loss_with_ablation", "model_behavior_preservation/kl_div_score",
                 "model_behavior_preservation/kl_div_with_sae", "model_behavior_preservation/kl_div_with_ablation"):
        assert name in reference
    assert set(reference) <= set(ours)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    density = torch.tensor(per_feature["feature_density"])
    assert ours["sparsity/dead_features_fraction"] == pytest.approx(float((density == 0).float().mean()))
    assert ours["sparsity/dense_features_fraction"] == pytest.approx(float((density > 0.1).float().mean()))
    # (The model is untrained, so no ordering of the CE losses is implied; the e2e test checks one.)
    # Logged: every metric, the density histogram, the densities.
    assert tracker.last["sparsity/l0"] == ours["sparsity/l0"]
    assert (tmp_path / "artifacts" / "feature_density.png").stat().st_size > 0
    assert (tmp_path / "artifacts" / "feature_density.json").exists()
    assert tracker.tags["sae.hook"] == HOOK and sae.cfg.metadata.hook_name == HOOK


def test_heldout_tokens_reproduce_the_heldout_store_rows(setup):
    """With every position counted, the evaluation sees exactly the activations training held out."""
    model, tokens, store, sae = setup
    heldout = store_heldout_tokens(tokens, store=store, eval_tokens=EVAL_TOKENS)
    ours = evaluate_sae(model, sae, heldout, batch_size_prompts=3, exclude_special_tokens=False,
                        compute_kl=False, compute_ce_loss=False)
    rows = ActivationStore.open(store["store_uri"]).read(HOOK, slice(360 - EVAL_TOKENS, 360)).float()
    with torch.no_grad():
        latents = sae.encode(rows)
        squared_error = (sae.decode(latents) - rows).pow(2).sum(-1)
    assert ours["sparsity/l0"] == pytest.approx(float((latents != 0).sum(-1).float().mean()), rel=1e-5)
    assert ours["reconstruction_quality/mse"] == pytest.approx(float(squared_error.mean()), rel=1e-4)
    assert ours["token_stats/total_tokens_eval_sparsity_variance"] == EVAL_TOKENS  # 2 batches of 3, the last short
    assert not any(name.startswith("model_") for name in ours)


def test_evaluate_sae_errors_name_the_key(setup):
    model, tokens, _, sae = setup
    with pytest.raises(ConfigError, match=r"^hook: expected a hook name of this model.*did you mean"):
        evaluate_sae(model, sae, tokens[:2], hook="blocks.0.hook_resid_pots")
    with pytest.raises(ConfigError, match=r"^dense_threshold: "):
        evaluate_sae(model, sae, tokens[:2], dense_threshold=2)
