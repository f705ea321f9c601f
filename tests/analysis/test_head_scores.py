"""Head scores (analysis/head_scores.py) on hand-built attention patterns; the stage on a tiny
model is tested in tests/stages/test_head_scores.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp_pipeline.analysis.head_scores import SCORES, detection_patterns, score_patterns, top_heads

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
