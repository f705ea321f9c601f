"""The train_sae stage: every architecture on a real activation store, metrics, errors, stops."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from sae_lens import SAE  # noqa: E402

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages  # noqa: E402
from interp_pipeline.storage.cache_codecs import codec_for  # noqa: E402
from interp_pipeline.sae.config import ARCHITECTURES, sae_settings  # noqa: E402
from interp_pipeline.sae.data import NonFiniteActivations  # noqa: E402
from interp_pipeline.sae.trainer import NonFiniteLoss  # noqa: E402
from interp_pipeline.stages.cache_activations import cache_activations  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402

HOOK = "blocks.0.hook_resid_post"  # d_model 16
# 30 sequences x 12 tokens = 360 rows; 40 held out, 5 steps of 64.
SMALL = dict(d_sae=32, train_batch_size_tokens=64, training_tokens=320, eval_tokens=40, log_every=2,
             lr=1e-3, device="cpu", seed=0)
TOP_K = {"topk": 4, "batchtopk": 4, "matryoshka_batchtopk": 4}  # the others refuse k


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store written by the real cache stage: 360 rows of one 16-wide hook, chunks of 48 rows."""
    model, tokens = tiny_model_and_tokens()
    out = tmp_path_factory.mktemp("store")
    return cache_activations(model, tokens, hooks=[HOOK, "blocks.1.attn.hook_z"], chunk_rows=48, batch_size_prompts=8,
                             store=str(out / "acts.zarr"))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_trains_and_reloads(architecture, store, tmp_path):
    tracker = RecordingTracker(NullRun(), tmp_path / "artifacts")
    sae = train_sae(store=store, hook=HOOK, architecture=architecture, tracker=tracker, **SMALL,
                    **({"k": TOP_K[architecture]} if architecture in TOP_K else {}))
    assert sae.cfg.d_in == 16 and sae.cfg.d_sae == 32
    assert tracker.last["steps"] == 5 and tracker.last["tokens_trained"] == 320
    assert tracker.last["eval/tokens"] == 40 and 0 <= tracker.last["eval/l0"] <= 32
    assert np.isfinite(tracker.last["eval/mse"])

    # Through the stage cache's codec: a directory SAELens itself loads.
    codec = codec_for(sae)
    assert codec.name == "sae_lens_sae"
    codec.save(sae, tmp_path / "sae")
    loaded = SAE.load_from_disk(str(tmp_path / "sae"))
    expected = "jumprelu" if "batchtopk" in architecture else architecture  # as SAELens saves BatchTopK
    assert loaded.cfg.architecture() == expected
    x = torch.randn(5, 16)
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
    cfg = json.loads((tmp_path / "artifacts" / "sae_cfg.json").read_text())
    assert cfg["d_sae"] == 32 and cfg["metadata"]["hook_name"] == HOOK
    # The run's artifacts carry the SAE itself, in the folder SAELens loads.
    logged = SAE.load_from_disk(str(tmp_path / "artifacts" / "sae"))
    torch.testing.assert_close(logged.decode(logged.encode(x)), sae.decode(sae.encode(x)))


class StepRun(NullRun):
    def __init__(self):
        self.logged: list[tuple[int | None, dict[str, float]]] = []

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


def test_sae_lens_step_metrics_reach_the_tracker_with_steps(store, tmp_path):
    run = StepRun()
    train_sae(store=store, hook=HOOK, tracker=RecordingTracker(run, tmp_path),
              **{**SMALL, "feature_sampling_window": 3})
    stepped = {step: metrics for step, metrics in run.logged if step is not None and "metrics/l0" in metrics}
    assert sorted(stepped) == [2, 4, 5]  # every log_every steps, and the last
    density = [(step, m) for step, m in run.logged if "metrics/mean_log10_feature_sparsity" in m]
    assert [step for step, _ in density] == [3] and "sparsity/below_1e-5" in density[0][1]
    for name in ("losses/overall_loss", "losses/mse_loss", "losses/l1_loss", "metrics/l0",
                 "metrics/explained_variance", "sparsity/dead_features", "details/current_learning_rate"):
        assert name in stepped[4], name
    assert stepped[4]["details/current_learning_rate"] == pytest.approx(1e-3)
    final = [metrics for step, metrics in run.logged if step is None and "eval/explained_variance" in metrics]
    assert final and "final/l0" in final[0] and final[0]["steps_per_s"] > 0


def test_held_out_rows_are_never_trained_on(tmp_path):
    from interp_pipeline.sae.data import from_store
    from tests.support.stores import RESID, write_store

    write_store(tmp_path / "s.zarr", n_rows=100, chunk_rows=16)  # column 0 of row i holds i
    params = sae_settings({**SMALL, "hook": RESID, "train_batch_size_tokens": 8, "eval_tokens": 20,
                           "training_tokens": 80})
    source = from_store(str(tmp_path / "s.zarr"), params)
    assert source.train_rows == 80 and source.holdout.shape == (20, 6) and source.d_in == 6
    assert source.holdout[:, 0].tolist() == list(range(80, 100))
    epochs = [torch.cat([next(source.batches) for _ in range(10)])[:, 0].long().tolist() for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(80))  # every training row once an epoch
    assert epochs[0] != epochs[1] and epochs[0] != list(range(80))  # shuffled, differently each epoch


def test_config_errors_name_their_keys(store):
    load_stage_modules()
    preflight = registered_stages()["train_sae"].preflight
    with pytest.raises(ConfigError, match=r"^architecture: .*found 'topkk' \(did you mean 'topk'\?\)"):
        preflight({"architecture": "topkk"})
    with pytest.raises(ConfigError, match=r"^d_in: expected the width of the activations \(16 for "
                                          r"blocks\.0\.hook_resid_post\), found 32"):
        train_sae(store=store, hook=HOOK, **{**SMALL, "d_in": 32})
    with pytest.raises(ConfigError, match=r"^training_tokens: expected at most 320 tokens.*found 100000.*"
                                          r"allow_fewer_tokens"):
        train_sae(store=store, hook=HOOK, **{**SMALL, "training_tokens": 100_000})
    with pytest.raises(ConfigError, match=r"^hook: .*found 'blocks.0.hook_resid_pots' \(did you mean"):
        train_sae(store=store, hook="blocks.0.hook_resid_pots", **SMALL)


def test_allow_fewer_tokens_trains_on_what_the_store_holds(store, tmp_path):
    tracker = RecordingTracker(NullRun(), tmp_path)
    train_sae(store=store, hook=HOOK, tracker=tracker, **{**SMALL, "training_tokens": 100_000,
                                                          "allow_fewer_tokens": True})
    assert tracker.last["tokens_trained"] == 320


def test_per_head_hooks_are_flattened(store):
    sae = train_sae(store=store, hook="blocks.1.attn.hook_z", **SMALL)
    assert sae.cfg.d_in == 16 and sae.cfg.metadata.hook_name == "blocks.1.attn.hook_z"


def test_non_finite_activations_stop_training_naming_the_rows():
    acts = torch.randn(200, 8)
    acts[17, 3] = float("nan")
    with pytest.raises(NonFiniteActivations, match=r"1 of 64 rows hold NaN or infinity \(rows 17\)"):
        train_sae(activations=acts, **{**SMALL, "eval_tokens": 8, "training_tokens": 128})
    acts[[3, 199, 192, 193, 195, 197, 194]] = float("inf")  # 192.. are held out: checked first
    shown = r"held-out rows: 6 of 8 rows .*\(rows 192, 193, 194, 195, 197, \.\.\.\)"  # the first five, sorted
    with pytest.raises(NonFiniteActivations, match=shown):
        train_sae(activations=acts, **{**SMALL, "eval_tokens": 8, "training_tokens": 128})


def test_non_finite_rows_of_a_store_are_named_by_store_row(tmp_path):
    from tests.support.stores import RESID, write_store

    values = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    values[[41, 7, 250]] = np.nan
    write_store(tmp_path / "nan.zarr", 300, 50, hooks=(RESID,), values={RESID: values})
    params = {**SMALL, "d_sae": 12, "eval_tokens": 20, "training_tokens": 256}
    with pytest.raises(NonFiniteActivations, match=r"hook blocks.0.hook_resid_pre: (1|2) of 64 rows hold NaN "
                                                   r"or infinity \(rows (7|41|250)(, (41|250))?\)"):
        train_sae(store=str(tmp_path / "nan.zarr"), **params)


def test_non_finite_loss_stops_training():
    huge = torch.full((200, 8), 3e38)  # finite, but its square overflows float32
    with pytest.raises(NonFiniteLoss, match=r"stopped at step 1: the loss is (inf|nan).*sae\.lr"):
        train_sae(activations=huge, **{**SMALL, "eval_tokens": 8, "training_tokens": 128})


def test_exactly_one_data_input(store):
    with pytest.raises(ConfigError, match=r"^inputs: expected exactly one .* found none"):
        train_sae(**SMALL)
    with pytest.raises(ConfigError, match=r"^inputs: expected exactly one .* found store and activations"):
        train_sae(store=store, activations=torch.zeros(200, 16), **SMALL)
