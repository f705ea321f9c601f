"""Data-parallel SAE training (interp_pipeline.sae.ranks) under torchrun, 2 ranks on the CPU (gloo).

Three torchrun launches share this module: an uninterrupted run (one SAE with quickstart's
recipe, then a one-pass standard + TopK pair), one killed with kill -9 of rank 1 after its
first checkpoint, and the same command again, which resumes. Each rank has one torch thread.
The first launch also checks that a non-finite loss on one rank stops both at the same step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from interp_pipeline.common.distributed import Ranks  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.sae import checkpoints  # noqa: E402
from interp_pipeline.sae.data import from_tensor  # noqa: E402
from interp_pipeline.sae.ranks import check_ranks, check_rows, rank_share  # noqa: E402
from tests.sae.ranked_training import VARIANTS  # noqa: E402
from tests.sae.train_until_killed import PARAMS, activations, run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# N ranks and one process sum the same numbers in another order: after 40 steps of Adam the weights
# differ by ~1e-6 of their largest value (measured 8e-7); this bound leaves room for other CPUs.
RELATIVE_TOLERANCE = 1e-5


def torchrun(out: Path, workdir: Path, *extra: str, sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEP_SLEEP_S": str(sleep), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "tests.sae.ranked_training", str(out), str(workdir), *extra]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The uninterrupted 2-rank run's SAEs (rank 0's files) and its report."""
    out = tmp_path_factory.mktemp("two_ranks")
    report = finished(torchrun(out, out / "work", "--variants", "--nan"))
    return out, report


def assert_close_to(expected: torch.nn.Module, found: dict[str, torch.Tensor]) -> None:
    for name, tensor in expected.state_dict().items():
        scale = float(tensor.abs().max())
        assert float((found[name] - tensor).abs().max()) <= RELATIVE_TOLERANCE * scale, name


def test_two_ranks_train_the_saes_one_process_trains(two_ranks):
    out, report = two_ranks
    assert report == {"resumed_from_step": 0.0, "steps": 40.0}  # the global batch's steps, not twice as many
    torch.set_num_threads(1)
    assert_close_to(run(None), load_file(str(out / "sae.safetensors")))
    for name, sae in run(None, variants=VARIANTS).items():
        assert_close_to(sae, load_file(str(out / f"{name}.safetensors")))


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(two_ranks):
    out = two_ranks[0]
    messages = [(out / f"nan-rank{rank}.txt").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1] and messages[0].startswith("SAE training stopped at step 6: the loss is ")


def test_kill_9_of_one_rank_stops_the_job_and_the_rerun_resumes_bit_exact(two_ranks, tmp_path):
    reference = load_file(str(two_ranks[0] / "sae.safetensors"))
    out, workdir = tmp_path / "out", tmp_path / "work"
    process = torchrun(out, workdir, sleep=0.05)
    deadline = time.monotonic() + 120
    while checkpoints.latest(workdir) is None:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    os.kill(int((out / "rank1.pid").read_text()), signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode != 0  # torchrun stops rank 0 too, and fails
    rank0 = int((out / "rank0.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)
    assert not (out / "sae.safetensors").exists()
    killed_at = checkpoints.latest(workdir).step

    report = finished(torchrun(out, workdir))
    assert killed_at <= report["resumed_from_step"] < 40 and report["steps"] == 40
    resumed = load_file(str(out / "sae.safetensors"))
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name


def test_each_rank_gets_a_disjoint_share_of_every_global_batch():
    source = from_tensor(activations(), {**PARAMS, "seed": 3, "buffer_chunks": 8})
    shares = [rank_share(from_tensor(activations(), {**PARAMS, "seed": 3}), Ranks(r, 4)).batches_from(5)
              for r in range(4)]
    whole = source.batches_from(5)
    for _ in range(3):
        assert torch.equal(torch.cat([next(share) for share in shares]), next(whole))


def test_bad_splits_are_refused_naming_the_key():
    params = {**PARAMS, "architecture": "standard", "variants": []}
    check_ranks(params, world_size=4)  # 64 rows: 16 a rank
    with pytest.raises(ConfigError, match=r"expected a multiple of the world size \(3 ranks\), found 64") as error:
        check_ranks(params, world_size=3)
    assert error.value.key == "train_batch_size_tokens"
    with pytest.raises(ConfigError) as error:
        check_ranks({**params, "variants": [{"architecture": "batchtopk"}]}, world_size=2)
    assert error.value.key == "architecture" and "whole batch" in str(error.value)
    check_rows(2, world_size=2)
    with pytest.raises(ConfigError, match=r"^inputs.store: expected at least one sequence per rank \(4 ranks\), "
                                          r"found 3"):
        check_rows(3, world_size=4)
