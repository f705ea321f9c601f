"""The toy model of superposition meets the tms experiment's expect: block (conf/experiment/tms.yaml)."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from interp_pipeline.report.expect import check_expectations
from interp_pipeline.common.paths import conf_dir
from interp_pipeline.stages.tms import tms_geometry, train_tms
from interp_pipeline.superposition.geometry import angular_gaps


@pytest.fixture(scope="module")
def geometry():
    # The experiment's settings (TMSConfig's defaults) at its two ends only, dense and sparsest:
    # the expect entries read those two levels, and 2 levels cost a fifth of 10.
    torch.set_num_threads(1)
    models = train_tms(sparsity_levels=2, seed=0)
    return models, tms_geometry(models)


def test_tms_meets_the_experiments_expect_block(geometry):
    _, result = geometry
    expect = OmegaConf.to_container(OmegaConf.load(conf_dir() / "experiment" / "tms.yaml"))["expect"]
    metrics = {f"geometry.{k}": v for k, v in result["summary"].items()}
    results = check_expectations(expect, metrics)
    assert len(results) == 6 and all(r.source and r.why for r in results)
    failed = [(r.key, r.expected, r.got) for r in results if not r.passed]
    assert not failed, failed


def test_dense_keeps_the_two_most_important_features_and_sparse_keeps_all_five(geometry):
    models, result = geometry
    dense, sparse = result["levels"]
    assert dense["sparsity"] == pytest.approx(0.0) and sparse["sparsity"] == pytest.approx(0.95)
    assert dense["represented"] == [0, 1]
    assert sparse["represented"] == [0, 1, 2, 3, 4]
    assert all(n < 0.1 for n in dense["norms"][2:])  # the three least important: not represented at all
    assert models["W"].shape == (2, 5, 2)


def test_angular_gaps_read_a_regular_polygon_and_an_orthogonal_pair():
    pentagon = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.arange(5) * 2 * math.pi / 5 + 0.3])
    assert angular_gaps(pentagon) == pytest.approx([72.0] * 5)
    assert sorted(angular_gaps(torch.tensor([[0.0, 2.0], [1.0, 0.0]]))) == pytest.approx([90.0, 270.0])
    assert angular_gaps(torch.tensor([[1.0, 0.0]])) == []
