"""The pipeline under torchrun (interp_pipeline.runner.ranked): 2 ranks on the CPU (gloo), one torch thread each.

One torchrun launch of ``python -m interp_pipeline`` (a tiny model, its activations cached by
both ranks in shards, an SAE trained by both) is compared with the same pipeline run in this
process; two plain processes with torchrun's variables and different overrides check that
ranks with different configs stop before any work.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_pipeline import api  # noqa: E402
from interp_pipeline.activations.reader import ActivationStore  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PIPELINE = """
stages:
  - {name: model, fn: load_model, params: '${model}'}
  - {name: tokens, fn: '${data.fn}', inputs: {model: model}, params: '${data.params}'}
  - {name: cache, fn: cache_activations, inputs: {model: model, tokens: tokens}, params: '${cache}'}
  - {name: sae, fn: train_sae, inputs: {store: cache}, params: '${sae}'}
"""
# The tiny random model over 64 x 32 random tokens; the store in 8 chunks (4 per rank), 10 SAE steps.
OVERRIDES = ["+cache=default", "+sae=default", "cache.hooks=[blocks.1.hook_resid_pre]", "cache.chunk_rows=256",
             "sae.train_batch_size_tokens=128", "sae.training_tokens=1280", "sae.eval_tokens=256",
             "sae.expansion_factor=2", "sae.log_every=5", "sae.normalize_activations=expected_average_only_in",
             "~expect"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the torchrun job's outputs directory, its completed process, this process's outputs directory)."""
    root = tmp_path_factory.mktemp("ranked")
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(PIPELINE)
    overrides = [f"pipeline={pipeline}", *OVERRIDES]
    ranked = root / "ranked"
    job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "interp_pipeline", "+experiment=smoke", *overrides, f"paths.outputs={ranked}"],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    single = root / "single"
    torch.set_num_threads(1)
    api.run("smoke", [*overrides, f"paths.outputs={single}", "tracking.enabled=false"])
    return ranked, job, single


def _entry(outputs: Path, fn: str) -> Path:
    (entry,) = [p for p in (outputs / "cache" / fn).iterdir() if (p / "complete.json").is_file()]
    return entry


def test_the_job_ends_with_the_store_and_sae_of_one_process(runs):
    ranked, job, single = runs
    assert job.returncode == 0, job.stderr[-3000:]
    # The same cache keys: the ranks' results serve a single-process run and the other way round.
    assert _entry(ranked, "train_sae").name == _entry(single, "train_sae").name
    stores = [ActivationStore.open(next((o / "cache" / "cache_activations").glob("*.data")) / "activations.zarr")
              for o in (ranked, single)]
    hook = "blocks.1.hook_resid_pre"
    assert stores[0].n_rows == stores[1].n_rows == 2048
    np.testing.assert_array_equal(stores[0].read(hook, slice(0, 2048), as_torch=False),
                                  stores[1].read(hook, slice(0, 2048), as_torch=False))
    np.testing.assert_array_equal(stores[0].token_ids(), stores[1].token_ids())
    from safetensors.torch import load_file

    saes = [load_file(str(next((_entry(o, "train_sae") / "sae").rglob("*.safetensors")))) for o in (ranked, single)]
    for name, tensor in saes[1].items():
        assert float((saes[0][name] - tensor).abs().max()) <= 1e-5 * float(tensor.abs().max()), name


def test_rank_0_alone_logs_to_mlflow_and_reports(runs):
    ranked, job, _ = runs
    assert job.returncode == 0, job.stderr[-3000:]
    with sqlite3.connect(ranked / "mlflow.db") as db:
        names = sorted(name for (name,) in db.execute("select name from runs"))
    assert len(names) == 5 and sum(name.startswith("smoke") for name in names) == 1, names  # parent + 4 stages
    assert len(list((ranked / "runs").rglob("report.json"))) == 1  # rank 0's
    (status,) = (ranked / "runs").rglob("rank1/exit_status")  # rank 1's own, apart
    assert status.read_text().strip() == "0"
    log = job.stdout + job.stderr
    assert "rank 0 of 2 (gloo)" in log and "[4/4] sae              computed" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_with_different_configs_all_exit_2_naming_the_key(tmp_path):
    port = str(_free_port())
    processes = []
    for rank, lr in ((0, "0.001"), (1, "0.002")):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "interp_pipeline", "+experiment=smoke", "+sae=default", f"sae.lr={lr}",
             f"paths.outputs={tmp_path}", "tracking.enabled=false"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for rank, process in enumerate(processes):
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 2, out[-2000:]
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out[-2000:]
        assert errors[0].startswith("error: sae.lr: expected the same composed config on every rank"), errors
        assert "found '0.002' on rank 1 and '0.001' on rank 0" in errors[0] or "found 0.002 on rank 1" in errors[0]
    assert not (tmp_path / "cache").exists()  # before any work
