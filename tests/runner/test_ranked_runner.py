"""The pipeline under torchrun (interp_pipeline.runner.ranked): 2 ranks on the CPU (gloo), one torch thread each.

One torchrun launch of ``python -m interp_pipeline`` (a tiny model, its activations cached by
both ranks in shards, an SAE trained by both) is compared with the same pipeline run in this
process; ranks with different configs are refused naming the key (every rank compares every
rank's config hash, so each raises the same error).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_pipeline import api  # noqa: E402
from interp_pipeline.activations.reader import ActivationStore  # noqa: E402
from interp_pipeline.common.distributed import Ranks, _check_same_config, config_digest  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402

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


class TwoRanks(Ranks):
    """Rank 0 of two whose other rank composed ``other``: gather returns both ranks' values."""

    def __init__(self, other):
        super().__init__(0, 2)
        object.__setattr__(self, "other", other)

    def gather(self, value):  # the digest first, then the flattened config
        return [value, config_digest(self.other) if isinstance(value, str) else self.other]


def test_ranks_with_different_configs_are_refused_naming_the_first_key_that_differs():
    config = {"sae.lr": 0.001, "sae.l1_coefficient": 5, "seed": 0}
    _check_same_config(TwoRanks(config), config)  # the same: nothing to say
    other = {"sae.lr": 0.002, "sae.l1_coefficient": 5, "seed": 0}
    with pytest.raises(ConfigError) as error:
        _check_same_config(TwoRanks(other), config)
    assert error.value.key == "sae.lr" and "\n" not in str(error.value)
    assert str(error.value).startswith(f"sae.lr: expected the same composed config on every rank (hash "
                                       f"{config_digest(config)} on rank 0), found 0.002 on rank 1 and 0.001 on rank 0")
    # Every rank gathers every config, so every rank raises the same error (each exits 2 before any work).
