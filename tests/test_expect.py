from __future__ import annotations

import math

import pytest

from interp_pipeline.report.expect import check, check_expectations, describe, per_name_matches, render_table


@pytest.mark.parametrize(
    ("entry", "got", "passed"),
    [
        ({"value": 3.55, "atol": 0.05}, 3.59, True),
        ({"value": 3.55, "atol": 0.05}, 3.61, False),
        ({"value": 100.0, "rtol": 0.01}, 100.9, True),
        ({"value": 100.0, "rtol": 0.01}, 101.1, False),
        ({"min": 0.5}, 0.5, True),
        ({"min": 0.5}, 0.49, False),
        ({"max": 0.3}, 0.31, False),
        ({"min": 1.0, "max": 2.0}, 1.5, True),
        ({"min": 0.0}, math.nan, False),
        ({"min": 0.0}, None, False),
    ],
)
def test_check(entry, got, passed):
    assert check(entry, got) is passed


def test_missing_metric_fails_and_is_shown_as_missing():
    results = check_expectations({"a.x": {"min": 0}, "a.y": {"max": 1}}, {"a.x": 2.0})
    assert [r.passed for r in results] == [True, False]
    table = render_table(results)
    assert "missing" in table and "FAIL" in table and "ok" in table


def test_a_missing_metric_made_per_name_is_pointed_to():
    metrics = {"eval.l1-1/sparsity/l0": 9.0, "eval.topk/sparsity/l0": 8.0, "eval.l1-1/sparsity/l1": 3.0,
               "sae.l1-1/sparsity/l0": 9.5}
    assert per_name_matches("eval.sparsity/l0", metrics) == ["eval.l1-1/sparsity/l0", "eval.topk/sparsity/l0"]
    assert per_name_matches("eval.sparsity/l2", metrics) == []


def test_describe():
    assert describe({"value": 3.5, "atol": 0.1}) == "3.5 ± 0.1"
    assert describe({"min": 1, "max": 2}) == ">= 1, <= 2"
