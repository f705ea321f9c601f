"""Sharkey, Braun and Millidge 2022 on a toy: an SAE trained with SAELens recovers features in superposition."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.experiments.compose import compose  # noqa: E402
from interp_pipeline.experiments.run import prepare  # noqa: E402
from interp_pipeline.pipeline.preflight import run_preflight  # noqa: E402
from interp_pipeline.stages.sae import sae_feature_recovery, toy_superposition, train_sae  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402


def test_experiment_composes_and_passes_preflight(outputs):
    config = compose(["+experiment=sae_toy_superposition", "seed=3"])
    assert config.sae.d_sae == 1024 and config.expect["recovery.mean_max_cosine_similarity"].min == 0.95
    stages = prepare(config).spec.stages
    toy = next(s for s in stages if s.name == "toy")
    # The paper's sizes are ToySuperpositionConfig's defaults; the seed is the experiment's.
    assert (toy.params["n_features"], toy.params["d"], toy.params["seed"]) == (512, 256, 3)
    run_preflight(stages)


def test_preflight_names_a_mistyped_architecture(outputs):
    from interp_pipeline.common.errors import ConfigError

    # The schema declares the choices, so the composed config's check finds it, before the stage's pre-flight.
    with pytest.raises(ConfigError, match=r"^sae\.architecture: .*found 'gatd' \(did you mean 'gated'\?\)"):
        run_preflight(prepare(compose(["+experiment=sae_toy_superposition", "sae.architecture=gatd"])).spec.stages)


def test_a_small_toy_is_recovered(tmp_path):
    """The same stages at a fraction of the size (64 features in 32 dimensions, TopK): seconds."""
    toy = toy_superposition(n_features=64, d=32, avg_active=3, seed=0)
    assert toy["features"].shape == (64, 32)
    torch.testing.assert_close(toy["features"].norm(dim=-1), torch.ones(64))
    tracker = RecordingTracker(NullRun(), tmp_path)
    sae = train_sae(synthetic=toy, architecture="topk", k=3, d_sae=128, lr=3e-3, train_batch_size_tokens=256,
                    training_tokens=256 * 300, eval_tokens=1024, log_every=100, device="cpu", seed=0,
                    tracker=tracker)
    scores = sae_feature_recovery(sae, toy, tracker=tracker)
    assert scores["mean_max_cosine_similarity"] >= 0.9, scores
    assert tracker.last["eval/explained_variance"] > 0.6  # k=3 cuts off tokens with more active features


# The experiment itself (sae_toy_superposition, ~80 s) runs end to end, its expect: checked, in .ci/run's
# offline reproduction suite (conf/suite/offline.yaml, entry sae_feature_recovery).
