"""The head_scores stage on a tiny random model: against an independent computation and
TransformerLens's detect_head, what it logs, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from interp_pipeline.analysis.head_scores import SCORES, detection_patterns
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.stages.head_scores import head_scores
from interp_pipeline.tracking.base import NullRun, RecordingTracker
from tests.support.models import tiny_hooked_transformer


@pytest.fixture(scope="module")
def model():
    return tiny_hooked_transformer(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=32, d_vocab=50,
                                   attn_only=True, seed=0, device="cpu")


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    # BOS-like token 0, then 15 random tokens twice: 31 tokens (< n_ctx, as detect_head requires).
    generator = torch.Generator().manual_seed(1)
    half = torch.randint(1, 50, (6, 15), generator=generator)
    return torch.cat([torch.zeros(6, 1, dtype=torch.long), half, half], dim=1)


def test_stage_returns_scores_for_every_head(model, probe: torch.Tensor) -> None:
    result = head_scores(model, probe, batch_size_prompts=4, top_k=3)
    assert set(result) == {*SCORES, "top_heads"}
    for name in SCORES:
        grid = np.array(result[name])
        assert grid.shape == (2, 4)
        assert ((grid >= 0) & (grid <= 1)).all()
    assert len(result["top_heads"]) == 3 * len(SCORES)
    assert {row["score"] for row in result["top_heads"]} == set(SCORES)


def test_stage_matches_an_independent_computation(model, probe: torch.Tensor) -> None:
    """Batching and averaging agree with the "mul" measure written out on the full cache."""
    result = head_scores(model, probe, batch_size_prompts=4, exclude_bos=False)  # batches of 4 and 2
    _, cache = model.run_with_cache(probe)
    for name in SCORES:
        expected = np.zeros((2, 4))
        for i, seq in enumerate(probe):
            det = detection_patterns(seq)[name]
            for layer in range(2):
                pattern = cache["pattern", layer][i].double()  # [head q k]
                expected[layer] += ((pattern * det).sum((-1, -2)) / pattern.sum((-1, -2))).numpy()
        np.testing.assert_allclose(result[name], expected / len(probe), atol=1e-6)


def test_stage_matches_transformer_lens_detect_head(model, probe: torch.Tensor, monkeypatch) -> None:
    """One sequence through TransformerLens's own detect_head (the tiny model has no tokenizer:
    to_tokens is patched to hand it the probe)."""
    from transformer_lens.head_detector import detect_head

    seq = probe[:1]
    monkeypatch.setattr(model, "to_tokens", lambda *args, **kwargs: seq)
    result = head_scores(model, seq, exclude_bos=False)
    for name in SCORES:
        expected = detect_head(model, "unused", f"{name}_head")
        np.testing.assert_allclose(result[name], expected.numpy(), atol=1e-5)


def test_stage_logs_metrics_heatmaps_and_table(model, probe: torch.Tensor, tmp_path: Path) -> None:
    tracker = RecordingTracker(NullRun(), tmp_path)
    result = head_scores(model, probe, tracker=tracker, top_k=2)
    for name in SCORES:
        assert (tmp_path / f"{name}_scores.png").stat().st_size > 0
        assert tracker.last[f"{name}.max"] == pytest.approx(np.max(result[name]))
        assert tracker.last[f"{name}.layer1.max"] == pytest.approx(max(result[name][1]))
        assert tracker.last[f"{name}.L1H3"] == pytest.approx(result[name][1][3])
    assert len(tracker.last) == len(SCORES) * (1 + 2 + 2 * 4)
    table = (tmp_path / "top_heads.md").read_text()
    assert table.startswith("| score | rank | head | value |")
    assert table.count("\n") == 2 + 2 * len(SCORES)


def test_stage_rejects_bad_params_and_tokens(model, probe: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="batch_size_prompts"):
        head_scores(model, probe, batch_size_prompts=0)
    with pytest.raises(ConfigError, match="top_k"):
        head_scores(model, probe, top_k=0)
    with pytest.raises(ValueError, match="n_ctx"):
        head_scores(model, torch.zeros(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        head_scores(model, probe[0])


def test_the_stage_default_excludes_bos_as_detect_head_does_with_that_option(model, probe, monkeypatch) -> None:
    from transformer_lens.head_detector import detect_head

    seq = probe[:1]
    monkeypatch.setattr(model, "to_tokens", lambda *args, **kwargs: seq)
    result = head_scores(model, seq)
    for name in SCORES:
        expected = detect_head(model, "unused", f"{name}_head", exclude_bos=True)
        np.testing.assert_allclose(result[name], expected.numpy(), atol=1e-5)
