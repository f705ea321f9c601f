from __future__ import annotations

import pytest
import torch
from interp_pipeline.tasks.base import make_task
from interp_pipeline.training import checkpoints
from interp_pipeline.training.config import TrainConfig
from interp_pipeline.training.trainer import train
from tests.support.models import task_model

TASK = {"name": "induction", "d_vocab": 20, "seq_len": 16, "min_repeat": 2, "max_repeat": 8, "eval_sequences": 16}


def fresh(seed: int = 0):
    task = make_task(TASK)
    return task_model(task, n_layers=1, d_model=16, n_heads=2, d_head=8, attn_only=True, seed=seed), task


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SETTINGS = dict(steps=20, batch_size_prompts=8, lr=1e-2, eval_every=10, checkpoint_every=10, log_every=5, warmup_steps=15)


def test_same_seed_same_weights_other_seed_other_weights():
    runs = []
    for seed in (0, 0, 1):
        model, task = fresh(seed)
        train(model, task, TrainConfig(**SETTINGS), seed=seed)
        runs.append(weights(model))
    assert same(runs[0], runs[1]) and not same(runs[0], runs[2])


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    model, task = fresh()
    train(model, task, TrainConfig(**SETTINGS), seed=0)
    uninterrupted = weights(model)

    # "Killed" after step 10: a run that stops there leaves the step-10 checkpoint.
    model, task = fresh()
    train(model, task, TrainConfig(**{**SETTINGS, "steps": 11}), seed=0, workdir=tmp_path)
    assert checkpoints.latest(tmp_path).step == 10
    model, task = fresh()  # a new process: fresh init, then the checkpoint
    metrics = train(model, task, TrainConfig(**SETTINGS), seed=0, workdir=tmp_path)
    assert same(weights(model), uninterrupted)
    assert "repeat_loss" in metrics


def test_partial_checkpoint_is_never_taken_as_latest(tmp_path):
    (tmp_path / "step-000000050").mkdir()  # no done.json: a checkpoint cut short
    assert checkpoints.latest(tmp_path) is None


def test_early_stopping_on_an_eval_metric():
    model, task = fresh()
    logged = {}

    class Record:
        def log_metrics(self, metrics, step=None):
            logged.update(metrics)

    settings = TrainConfig(**{**SETTINGS, "steps": 100, "eval_every": 5},
                           early_stop_metric="loss", early_stop_max=100.0)
    train(model, task, settings, seed=0, tracker=Record())
    assert logged["stopped_early_at"] == 5 and logged["steps_trained"] == 5


def test_non_finite_loss_stops_training():
    model, task = fresh()
    with torch.no_grad():
        model.embed.W_E.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        train(model, task, TrainConfig(**SETTINGS), seed=0)


@pytest.mark.parametrize("spoil", ["truncated", "poisoned"])
def test_an_unreadable_optimizer_state_is_named_in_one_line_with_what_to_delete(spoil, tmp_path):
    import os

    from interp_pipeline.storage.checkpoint_files import CorruptCheckpoint

    class Poison:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    model, task = fresh()
    train(model, task, TrainConfig(**{**SETTINGS, "steps": 11}), seed=0, workdir=tmp_path / "work")
    found = checkpoints.latest(tmp_path / "work")
    state = found.path / "optimizer.pt"
    if spoil == "truncated":
        state.write_bytes(state.read_bytes()[:100])
    else:
        torch.save({"state": {}, "param_groups": [], "payload": Poison()}, state)
    model, task = fresh()
    with pytest.raises(CorruptCheckpoint) as caught:
        train(model, task, TrainConfig(**SETTINGS), seed=0, workdir=tmp_path / "work")
    assert str(caught.value).startswith(f"checkpoint file {state} cannot be loaded (")
    assert str(caught.value).endswith(f"; delete {found.path} to start over")
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)
    assert not (tmp_path / "pwned").exists()
