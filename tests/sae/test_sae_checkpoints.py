"""train_sae's checkpoints: a killed run resumes to the uninterrupted result; bad checkpoints are never used."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from sae_lens.training.sae_trainer import SAETrainer  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from interp_pipeline.storage.atomic_dirs import TEMPORARY  # noqa: E402
from interp_pipeline.storage.checkpoint_files import CorruptCheckpoint  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.sae import checkpoints  # noqa: E402
from interp_pipeline.sae.config import sae_settings  # noqa: E402
from interp_pipeline.sae.data import from_store, from_tensor  # noqa: E402
from interp_pipeline.sae.toy import make_toy_model  # noqa: E402
from interp_pipeline.sae.trainer import NonFiniteLoss  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402
from interp_pipeline.tracking.base import Tracker  # noqa: E402
from tests.sae.train_until_killed import run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class Interrupted(BaseException):
    """Stands in for a crash partway through training."""


class StepLog(Tracker):
    """Keeps (learning rate, loss) per step; raises Interrupted when step ``stop_at`` is logged."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at
        self.steps: dict[int, tuple[float, float]] = {}
        self.last: dict[str, float] = {}

    def log_metrics(self, metrics, step=None):
        self.last.update(metrics)
        if step is not None and "details/current_learning_rate" in metrics:
            self.steps[step] = (metrics["details/current_learning_rate"], metrics["losses/overall_loss"])
        if step is not None and step == self.stop_at:
            raise Interrupted


def weights(sae) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sae.state_dict().items()}


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run of train_until_killed's config: final weights and per-step lr and loss."""
    log = StepLog()
    sae = run(None, log)
    assert sorted(log.steps) == list(range(1, 41))
    return weights(sae), log.steps


def test_interrupted_run_resumes_with_the_same_steps_schedule_and_weights(reference, tmp_path):
    final, steps = reference
    with pytest.raises(Interrupted):
        run(str(tmp_path), StepLog(stop_at=10))
    assert checkpoints.latest(tmp_path).step == 8  # every 4 steps; step 10 died before its own
    log = StepLog()
    resumed = run(str(tmp_path), log)
    assert log.last["resumed_from_step"] == 8 and log.last["steps"] == 40
    assert sorted(log.steps) == list(range(9, 41))  # the step count goes on from the checkpoint
    for step, (lr, loss) in log.steps.items():  # the cosine schedule and the L1 warm-up go on too
        assert lr == pytest.approx(steps[step][0], rel=1e-6), step
        assert loss == pytest.approx(steps[step][1], rel=1e-5), step
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, final[name])


def test_settings_that_do_not_change_the_result_may_change_on_resume(reference, tmp_path):
    with pytest.raises(Interrupted):
        run(str(tmp_path), StepLog(stop_at=6))
    resumed = run(str(tmp_path), StepLog(), log_every=7, checkpoint_every=5)
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, reference[0][name])


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_to_the_uninterrupted_weights(reference, tmp_path):
    workdir, out = tmp_path / "work", tmp_path / "out" / "sae.safetensors"
    out.parent.mkdir()
    command = [sys.executable, "-m", "tests.sae.train_until_killed", str(workdir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEP_SLEEP_S": "0.05"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while checkpoints.latest(workdir) is None:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not out.exists()
    killed_at = checkpoints.latest(workdir).step
    assert 4 <= killed_at < 40

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout.strip().splitlines()[-1])
    # The killed run may have written one more checkpoint between our look and the signal.
    assert killed_at <= report["resumed_from_step"] < 40 and report["steps"] == 40
    resumed = load_file(str(out))
    for name, tensor in reference[0].items():
        torch.testing.assert_close(resumed[name], tensor)


def test_a_checkpoint_of_another_config_is_refused_in_one_line(tmp_path):
    with pytest.raises(Interrupted):
        run(str(tmp_path), StepLog(stop_at=5))
    with pytest.raises(ConfigError) as error:
        run(str(tmp_path), StepLog(), lr=1e-3)
    message = str(error.value)
    assert "\n" not in message and error.value.key == "lr"
    first = tmp_path / "step-000000004"
    assert message.startswith(f"lr: expected the settings of the checkpoint being resumed ({first}, step 4), "
                              "found lr=0.003 there, 0.001 here (")
    assert f"or delete {tmp_path} to start over" in message
    with pytest.raises(ConfigError, match=r"^d_sae: .*d_sae=32 there, 64 here, lr=0.003 there, 0.002 here"):
        run(str(tmp_path), StepLog(), lr=2e-3, d_sae=64)


@pytest.mark.parametrize("poison_after", [10, 11], ids=["nan-loss-at-12", "nan-weights-at-checkpoint-12"])
def test_a_non_finite_checkpoint_never_becomes_the_latest(poison_after, tmp_path, monkeypatch):
    trained = SAETrainer._train_step

    def poisoning(self, sae, sae_in):
        output = trained(self, sae, sae_in)
        if self.n_training_steps == poison_after:  # the step counter advances after this returns
            with torch.no_grad():
                sae.W_dec[0, 0] = float("nan")
        return output

    monkeypatch.setattr(SAETrainer, "_train_step", poisoning)
    # After poisoning at step 11 the loss of step 12 is NaN; at step 12, its loss is fine but its weights are not.
    expected = NonFiniteLoss if poison_after == 10 else checkpoints.NonFiniteCheckpoint
    with pytest.raises(expected, match=r"step 12: .*(loss is nan|W_dec hold NaN)"):
        run(str(tmp_path), StepLog())
    latest = checkpoints.latest(tmp_path)
    assert latest.step == 8 and [p.name for p in tmp_path.iterdir()] == ["step-000000008"]
    saved, _ = checkpoints.load(latest, "cpu")
    assert all(bool(torch.isfinite(t).all()) for t in saved.values())


def test_non_finite_values_are_refused_before_anything_is_written(tmp_path):
    good = {"W": torch.ones(2, 2)}
    checkpoints.save(tmp_path, 3, 0.5, good, {"n_training_steps": 3}, {"lr": 1.0})
    with pytest.raises(checkpoints.NonFiniteCheckpoint, match="loss is inf"):
        checkpoints.save(tmp_path, 6, float("inf"), good, {}, {"lr": 1.0})
    with pytest.raises(checkpoints.NonFiniteCheckpoint, match="W hold NaN"):
        checkpoints.save(tmp_path, 6, 0.5, {"W": torch.tensor([[1.0, float("nan")]])}, {}, {"lr": 1.0})
    assert checkpoints.latest(tmp_path).step == 3 and len(list(tmp_path.iterdir())) == 1


def test_partial_checkpoints_are_never_taken_as_the_latest(reference, tmp_path):
    with pytest.raises(Interrupted):
        run(str(tmp_path), StepLog(stop_at=10))
    # What a kill -9 mid-write can leave: a temporary directory, and (were rename not atomic) a
    # final name without its manifest; and a manifest that does not say the values were finite.
    (tmp_path / "step-000000016").mkdir()
    (tmp_path / "step-000000016" / checkpoints.WEIGHTS).write_bytes(b"partial")
    leftover = tmp_path / f"{TEMPORARY}step-000000012-999999999"
    leftover.mkdir()
    (leftover / checkpoints.MANIFEST).write_text(json.dumps({"step": 12, "finite": True}))
    (tmp_path / "step-000000020").mkdir()
    (tmp_path / "step-000000020" / checkpoints.MANIFEST).write_text(json.dumps({"step": 20}))
    assert checkpoints.latest(tmp_path).step == 8
    resumed = run(str(tmp_path), StepLog(), checkpoint_every=30)
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, reference[0][name])


def test_trainer_state_loads_with_weights_only(tmp_path):
    with pytest.raises(Interrupted):
        run(str(tmp_path), StepLog(stop_at=5))
    state = torch.load(tmp_path / "step-000000004" / checkpoints.STATE, weights_only=True)
    assert state["n_training_steps"] == 4 and state["data_position"] == 40 + 4  # 40 batches for the scale estimate
    assert {"optimizer", "lr_scheduler", "coefficient_schedulers", "rng_cpu", "scaling_factor"} <= set(state)
    manifest = json.loads((tmp_path / "step-000000004" / checkpoints.MANIFEST).read_text())
    assert manifest["identity"]["lr"] == 0.003 and "log_every" not in manifest["identity"]


class Poison:
    """A pickle that runs a command when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _garbage(path: Path, tmp_path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])  # cut short, as a full disk or a bad copy leaves it


def _poisoned(path: Path, tmp_path: Path) -> None:
    torch.save({"n_training_steps": 3, "payload": Poison(tmp_path / "pwned")}, path)


@pytest.mark.parametrize("spoil, name", [(_poisoned, checkpoints.STATE), (_garbage, checkpoints.STATE),
                                         (_garbage, checkpoints.WEIGHTS), (_garbage, checkpoints.MANIFEST)])
def test_an_unreadable_checkpoint_file_is_named_in_one_line_with_what_to_delete(spoil, name, tmp_path):
    saved = checkpoints.save(tmp_path, 3, 0.5, {"W": torch.ones(2, 2)}, {"n_training_steps": 3}, {"lr": 1.0})
    spoil(saved / name, tmp_path)
    with pytest.raises(CorruptCheckpoint) as caught:
        checkpoints.load(checkpoints.latest(tmp_path), "cpu")
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message
    assert message.startswith(f"checkpoint file {saved / name} cannot be loaded (")
    assert message.endswith(f"; delete {saved} to start over")
    assert not (tmp_path / "pwned").exists()


def _params(**overrides):
    return sae_settings(overrides)


def test_batches_from_a_position_continue_the_stream(tmp_path):
    from tests.support.stores import RESID, write_store

    values = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    write_store(tmp_path / "s.zarr", n_rows=200, chunk_rows=16, hooks=(RESID,), values={RESID: values})
    params = _params(hook=RESID, train_batch_size_tokens=16, training_tokens=160, eval_tokens=40, buffer_chunks=2)
    sources = [from_store(str(tmp_path / "s.zarr"), params),
               from_tensor(torch.from_numpy(values), _params(train_batch_size_tokens=16, training_tokens=160,
                                                         eval_tokens=40))]
    for source in sources:  # 10 batches an epoch: positions inside the first, on the boundary, in the third
        stream = list(itertools.islice(source.batches_from(0), 25))
        for position in (3, 10, 23):
            resumed = list(itertools.islice(source.batches_from(position), 25 - position))
            assert all(torch.equal(a, b) for a, b in zip(resumed, stream[position:], strict=True)), position


def test_a_store_run_resumes_across_an_epoch_boundary(tmp_path):
    from tests.support.stores import RESID, write_store

    values = np.random.default_rng(1).normal(size=(200, 6)).astype(np.float32)
    write_store(tmp_path / "s.zarr", n_rows=200, chunk_rows=16, hooks=(RESID,), values={RESID: values})
    params = dict(store=str(tmp_path / "s.zarr"), hook=RESID, d_sae=12, train_batch_size_tokens=16,
                  training_tokens=160, eval_tokens=40, buffer_chunks=2, lr=3e-3, log_every=1, checkpoint_every=3,
                  normalize_activations="expected_average_only_in", device="cpu", seed=0)
    expected = weights(train_sae(**params))  # 10 batches to estimate the scale, then 10 steps: epochs 0 and 1
    with pytest.raises(Interrupted):
        train_sae(**params, workdir=tmp_path / "work", tracker=StepLog(stop_at=5))
    log = StepLog()
    resumed = train_sae(**params, workdir=tmp_path / "work", tracker=log)
    assert log.last["resumed_from_step"] == 3
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, expected[name])


def test_a_synthetic_run_resumes_to_the_same_weights(tmp_path):
    toy = make_toy_model(24, 8, avg_active=2.0, magnitude_mean=1.0, magnitude_std=0.1, seed=0)
    params = dict(synthetic=toy, d_sae=32, train_batch_size_tokens=32, training_tokens=32 * 15, eval_tokens=32,
                  lr=3e-3, log_every=1, checkpoint_every=4, device="cpu", seed=5)
    expected = weights(train_sae(**params))
    with pytest.raises(Interrupted):
        train_sae(**params, workdir=tmp_path, tracker=StepLog(stop_at=10))
    log = StepLog()
    resumed = train_sae(**params, workdir=tmp_path, tracker=log)
    assert log.last["resumed_from_step"] == 8
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, expected[name])


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_shuffled_batches_skip_without_reading_what_they_skip(drop_last, shuffle, tmp_path, monkeypatch):
    from interp_pipeline.activations import chunked_reads
    from interp_pipeline.activations.reader import ActivationStore
    from tests.support.stores import RESID, write_store

    write_store(tmp_path / "s.zarr", n_rows=203, chunk_rows=16, hooks=(RESID,))
    arr = ActivationStore.open(str(tmp_path / "s.zarr"))._array(RESID)
    kwargs = dict(seed=4, epochs=range(2, 4), shuffle=shuffle, buffer_chunks=3, drop_last=drop_last)
    unbroken = [rows for _, rows in chunked_reads.shuffled_batches(arr, 203, 16, 10, **kwargs)]
    read = []
    reading = chunked_reads.read_rows
    monkeypatch.setattr(chunked_reads, "read_rows", lambda a, index: read.append(index.size) or reading(a, index))
    for skip in (0, 1, 4, 5, 9, 20, 21, 25):
        read.clear()
        batches = list(chunked_reads.shuffled_batches(arr, 203, 16, 10, skip=skip, **kwargs))
        assert [rows.tolist() for _, rows in batches] == [rows.tolist() for rows in unbroken[skip:]], skip
        assert all(np.array_equal(raw[:, 0], rows) for raw, rows in batches)  # column 0 of row i holds i
        if skip >= 4:  # the first buffer (48 rows, 4 batches and 8 carried) was skipped unread
            assert sum(read) <= 2 * 203 - 48 + 9, (skip, read)


class DataFailed(RuntimeError):
    pass


def test_the_runner_resumes_train_sae_from_its_workdir_and_clears_it(tmp_path, monkeypatch):
    from interp_pipeline.pipeline.spec import parse_stages
    from interp_pipeline.runner.runner import COMPUTED, PipelineRunner
    from interp_pipeline.runner.stage_cache import StageCache
    from interp_pipeline.sae import trainer

    toy = dict(n_features=24, d=8, avg_active=2.0, seed=0)
    sae = dict(d_sae=32, train_batch_size_tokens=32, training_tokens=32 * 15, eval_tokens=32, lr=3e-3,
               checkpoint_every=4, device="cpu", seed=5)
    pipeline = parse_stages([{"name": "toy", "fn": "toy_superposition", "params": toy},
                             {"name": "sae", "fn": "train_sae", "inputs": {"synthetic": "toy"}, "params": sae}],
                            name="p", label="p")
    drawn = trainer.CountingBatches.__next__

    def failing(self):
        if self.position == 10:
            raise DataFailed("the store went away")
        return drawn(self)

    monkeypatch.setattr(trainer.CountingBatches, "__next__", failing)
    cache = StageCache(tmp_path / "cache")
    with pytest.raises(Exception, match="the store went away"):
        list(PipelineRunner(pipeline, cache).run())
    workdir, = (tmp_path / "cache" / "train_sae").glob("*.work")
    assert checkpoints.latest(workdir).step == 8
    monkeypatch.setattr(trainer.CountingBatches, "__next__", drawn)
    outcomes = {o.name: o for o in PipelineRunner(pipeline, cache).run()}
    assert outcomes["sae"].status == COMPUTED and outcomes["sae"].metrics["resumed_from_step"] == 8
    assert not workdir.exists()  # the stored result supersedes its checkpoints
    stored = cache.lookup("train_sae", outcomes["sae"].key).load_output("sae")
    expected = train_sae(synthetic=make_toy_model(24, 8, avg_active=2.0, magnitude_mean=1.0, magnitude_std=0.0,
                                                  seed=0), **sae)
    for name, tensor in weights(expected).items():
        torch.testing.assert_close(stored.state_dict()[name], tensor)
