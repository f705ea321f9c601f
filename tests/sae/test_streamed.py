"""train_sae with no activation cache: the model's activations streamed as training draws them."""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.activations.reader import ActivationStore  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.sae.config import sae_settings  # noqa: E402
from interp_pipeline.sae.data import from_model  # noqa: E402
from interp_pipeline.stages.cache_activations import cache_activations  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402
from interp_pipeline.stages.heldout_tokens import store_heldout_tokens  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402

HOOK = "blocks.0.hook_resid_post"  # d_model 16; stop_at_layer=1 of 2 blocks
# 30 sequences x 12 tokens = 360 rows; the last 40 held out (sequence 26 is split); batches of 16,
# buffers of 2 batches (2 sequences, 24 rows: one batch each, 8 rows dropped).
PARAMS = sae_settings({"hook": HOOK, "train_batch_size_tokens": 16, "training_tokens": 160, "eval_tokens": 40,
                       "buffer_chunks": 2, "seed": 0})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, tokens = tiny_model_and_tokens()
    store = cache_activations(model, tokens, hooks=[HOOK], chunk_rows=48, batch_size_prompts=8,
                              store=str(tmp_path_factory.mktemp("store") / "acts.zarr"))
    return model, tokens, ActivationStore.open(store["store_uri"])


def test_streamed_rows_are_the_stores_training_rows_shuffled(setup):
    model, tokens, store = setup
    source = from_model(model, tokens, PARAMS)
    rows = store.read(HOOK, slice(0, None)).float()
    assert source.train_rows == 320 and source.d_in == 16
    torch.testing.assert_close(source.holdout, rows[320:], atol=1e-5, rtol=1e-5)  # the same held-out rows
    # One epoch: 27 training sequences in buffers of 2 (the last alone); 12 of 24 rows per full buffer
    # are dropped, as the last sequence's 8 training rows (of 12) are, too few for a batch.
    epoch = torch.cat([next(source.batches) for _ in range(13)])
    nearest = torch.cdist(epoch, rows, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
    assert float(nearest.values.max()) < 1e-4  # every streamed row is a row of the store
    # ...a training row, and none more often than the training rows hold it (equal rows exist:
    # the same token at position 0 of two sequences).
    streamed, training = Counter(map(_key, epoch)), Counter(map(_key, rows[:320]))
    assert sum(streamed.values()) == 13 * 16 and all(n <= training[row] for row, n in streamed.items())
    # Shuffled: not in the store's order.
    assert nearest.indices.tolist() != sorted(nearest.indices.tolist())


def _key(row):
    return tuple(round(float(x), 4) for x in row)


def test_a_resumed_stream_skips_buffers_without_running_the_model(setup, monkeypatch):
    model, tokens, _ = setup
    source = from_model(model, tokens, PARAMS)
    unbroken = [next(source.batches) for _ in range(20)]  # into the second epoch
    forwards = []
    run_with_cache = type(model).run_with_cache
    monkeypatch.setattr(type(model), "run_with_cache",
                        lambda self, *a, **k: forwards.append(1) or run_with_cache(self, *a, **k))
    resumed = source.batches_from(11)
    for expected in unbroken[11:]:
        torch.testing.assert_close(next(resumed), expected)
    assert len(forwards) == 9  # one per buffer drawn from (9 batches, one each); none for the 11 skipped


def test_train_sae_streamed_from_the_model_and_evaluated_on_whole_heldout_sequences(setup, tmp_path):
    model, tokens, _ = setup
    tracker = RecordingTracker(NullRun(), tmp_path)
    sae = train_sae(model=model, tokens=tokens, **{**PARAMS, "d_sae": 32, "device": "cpu", "log_every": 2},
                    tracker=tracker)
    assert sae.cfg.metadata.hook_name == HOOK and tracker.last["steps"] == 10
    assert tracker.last["eval/tokens"] == 40
    # With no store the rows are every position in order: sequence 26 is split, 27-29 held out whole.
    torch.testing.assert_close(store_heldout_tokens(tokens, eval_tokens=40), tokens[27:30])


def test_streaming_errors_name_their_keys(setup):
    model, tokens, _ = setup
    with pytest.raises(ConfigError, match=r"^hook: expected the hook to train on"):
        from_model(model, tokens, {**PARAMS, "hook": None})
    with pytest.raises(ConfigError, match=r"^hook: expected a hook name of this model, found 'blocks.0.hook_resid_pst'"):
        from_model(model, tokens, {**PARAMS, "hook": "blocks.0.hook_resid_pst"})
    with pytest.raises(ConfigError, match=r"^inputs: .*found model$"):
        train_sae(model=model, **PARAMS)
