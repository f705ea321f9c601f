"""Ranks from the launcher's environment (interp_pipeline.common.distributed): SLURM's task variables, no torchrun."""

from __future__ import annotations

import os

import pytest

from interp_pipeline.common import distributed


@pytest.fixture(autouse=True)
def environment_put_back():
    """_env_from_slurm writes RANK, WORLD_SIZE, MASTER_ADDR... into os.environ: later tests must not see them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_slurm_tasks_become_torchrun_ranks(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[7-8]")
    monkeypatch.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.7")
    assert distributed.world_size_from_env() == 4  # pre-flight sees the job's size before joining
    distributed._env_from_slurm(os.environ)
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("3", "4", "1")
    assert os.environ["MASTER_ADDR"] and os.environ["MASTER_PORT"].isdigit()


def test_a_single_task_or_a_plain_run_is_one_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world_size_from_env() == 1
    assert distributed.join({"a": 1}) is distributed.SINGLE
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a sweep job of the submitit launcher: one task
    assert distributed.join({"a": 1}) is distributed.SINGLE and "RANK" not in os.environ
