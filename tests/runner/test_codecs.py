from __future__ import annotations

import numpy as np
import pytest
import torch

from interp_pipeline.runner.stage_cache import StageCache


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None], "b": "text"},
        np.arange(12, dtype=np.float32).reshape(3, 4),
        torch.randn(3, 5),
        torch.arange(10),
        {"x": torch.ones(2, 2), "y": torch.zeros(3)},
    ],
    ids=["json", "ndarray", "tensor", "int-tensor", "tensor-dict"],
)
def test_round_trip(tmp_path, value):
    cache = StageCache(tmp_path)
    pending = cache.begin("f", "0" * 32)
    pending.write_output("out", value)
    loaded = pending.commit(run_id=None, metrics={}, extra={}).load_output("out")
    if isinstance(value, torch.Tensor):
        assert torch.equal(loaded, value)
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(loaded, value)
    elif isinstance(value, dict) and isinstance(next(iter(value.values())), torch.Tensor):
        assert all(torch.equal(loaded[k], v) for k, v in value.items())
    else:
        assert loaded == value


def test_an_unstorable_value_is_refused_with_advice(tmp_path):
    pending = StageCache(tmp_path).begin("f", "0" * 32)
    with pytest.raises(TypeError, match="cache=False"):
        pending.write_output("out", object())
