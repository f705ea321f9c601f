"""Head scores: the helpers on hand-built attention patterns, and the stage on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from interp_pipeline.analysis.head_scores import SCORES, detection_patterns, score_patterns, top_heads
from interp_pipeline.errors import ConfigError
from interp_pipeline.stages.head_scores import head_scores
from interp_pipeline.tracking.base import NullRun, RecordingTracker
from tests.support.models import tiny_hooked_transformer

HALF = 10  # distinct tokens, then the same again: length 2 * HALF
SEQ = torch.cat([torch.arange(5, 5 + HALF), torch.arange(5, 5 + HALF)])


def _rows_to(targets: dict[int, int], n: int) -> torch.Tensor:
    """An attention pattern [q, k]: row q puts all its weight on targets[q], else on itself."""
    pattern = torch.zeros(n, n)
    for q in range(n):
        pattern[q, targets.get(q, q)] = 1.0
    return pattern


def _previous_token_pattern(n: int) -> torch.Tensor:
    return _rows_to({q: q - 1 for q in range(1, n)}, n)


def _induction_pattern(n: int, half: int) -> torch.Tensor:
    # The query at half + j (token j again) attends to the token after the first j: j + 1.
    return _rows_to({half + j: j + 1 for j in range(half)}, n)


def _duplicate_pattern(n: int, half: int) -> torch.Tensor:
    return _rows_to({half + j: j for j in range(half)}, n)


def _scores_of(pattern: torch.Tensor, tokens: torch.Tensor = SEQ) -> dict[str, float]:
    grids = score_patterns(pattern[None, None], tokens)  # one layer, one head
    return {name: float(grid[0, 0]) for name, grid in grids.items()}


def test_detection_patterns_follow_the_sequence_not_its_halves() -> None:
    # Token 7 at positions 1, 4 and 6: three occurrences, not two halves.
    tokens = torch.tensor([0, 7, 3, 9, 7, 3, 7])
    detections = detection_patterns(tokens)
    dup = detections["duplicate_token"]
    assert dup[4, 1] == 1 and dup[6, 1] == 1 and dup[6, 4] == 1 and dup[5, 2] == 1
    assert dup.sum() == 4
    induction = detections["induction"]
    # Query 6 (token 7) should look at what followed each earlier 7: positions 2 and 5.
    assert induction[6, 2] == 1 and induction[6, 5] == 1


def test_previous_token_pattern_scores_as_previous_token_head() -> None:
    n = len(SEQ)
    scores = _scores_of(_previous_token_pattern(n))
    # Only the first query, which has no previous token, misses ("mul": fraction of attention).
    assert scores["previous_token"] == pytest.approx((n - 1) / n)
    assert scores["induction"] == pytest.approx(0.0)
    assert scores["duplicate_token"] == pytest.approx(0.0)


def test_induction_pattern_scores_as_induction_head() -> None:
    n = len(SEQ)
    scores = _scores_of(_induction_pattern(n, HALF))
    # The second half's HALF queries are all on target; the first half has none to hit.
    assert scores["induction"] == pytest.approx(HALF / n)
    assert scores["induction"] > 0.45
    assert scores["previous_token"] == pytest.approx(0.0)
    assert scores["duplicate_token"] == pytest.approx(0.0)


def test_duplicate_pattern_scores_as_duplicate_head() -> None:
    scores = _scores_of(_duplicate_pattern(len(SEQ), HALF))
    assert scores["duplicate_token"] == pytest.approx(0.5)
    assert scores["induction"] == pytest.approx(0.0)


def test_scores_average_over_sequences_and_keep_layers_and_heads_apart() -> None:
    n = len(SEQ)
    prev, ind = _previous_token_pattern(n), _induction_pattern(n, HALF)
    # [batch 2, layer 2, head 2, q, k]: L0H0 is previous-token in both sequences,
    # L1H1 is induction in the first and previous-token in the second.
    patterns = torch.stack([
        torch.stack([torch.stack([prev, ind]), torch.stack([ind, ind])]),
        torch.stack([torch.stack([prev, ind]), torch.stack([ind, prev])]),
    ])
    grids = score_patterns(patterns, torch.stack([SEQ, SEQ]))
    assert grids["induction"].shape == (2, 2)
    assert grids["previous_token"][0, 0] == pytest.approx((n - 1) / n)
    assert grids["induction"][1, 1] == pytest.approx(HALF / n / 2)
    assert grids["previous_token"][1, 1] == pytest.approx((n - 1) / n / 2)


def test_top_heads_are_sorted_per_score() -> None:
    grids = {name: np.array([[0.1, 0.9], [0.5, 0.3]]) for name in SCORES}
    rows = top_heads(grids, 2)
    assert len(rows) == 2 * len(SCORES)
    assert rows[:2] == [
        {"score": "previous_token", "layer": 0, "head": 1, "value": 0.9},
        {"score": "previous_token", "layer": 1, "head": 0, "value": 0.5},
    ]


# --- the stage on a tiny random model -----------------------------------------------


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
    result = head_scores(model, probe, batch_size=4, top_k=3)
    assert set(result) == {*SCORES, "top_heads"}
    for name in SCORES:
        grid = np.array(result[name])
        assert grid.shape == (2, 4)
        assert ((grid >= 0) & (grid <= 1)).all()
    assert len(result["top_heads"]) == 3 * len(SCORES)
    assert {row["score"] for row in result["top_heads"]} == set(SCORES)


def test_stage_matches_an_independent_computation(model, probe: torch.Tensor) -> None:
    """Batching and averaging agree with the "mul" measure written out on the full cache."""
    result = head_scores(model, probe, batch_size=4, exclude_bos=False)  # batches of 4 and 2
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
    with pytest.raises(ConfigError, match="batch_size"):
        head_scores(model, probe, batch_size=0)
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
