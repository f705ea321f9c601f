"""Find a run of token ids among a store's rows: pure array logic, apart from the store that holds the rows."""

from __future__ import annotations

import numpy as np


def first_run(query: np.ndarray, tokens: np.ndarray, sequences: np.ndarray, positions: np.ndarray) -> int | None:
    """The first row at which ``query`` starts as adjacent rows of one sequence at consecutive positions.

    ``tokens``, ``sequences`` and ``positions`` describe every row (a store's index arrays);
    None when no run of rows holds ``query``.
    """
    k, n = query.size, tokens.size
    # Grow the match one offset at a time: memory stays O(n_rows), unlike a
    # sliding-window view compared all at once (O(n_rows * k)).
    match = tokens[: max(n - k + 1, 0)] == query[0]
    for i in range(1, k):
        if not match.any():
            break
        end = n - k + 1 + i
        match &= tokens[i:end] == query[i]
        match &= sequences[i:end] == sequences[: n - k + 1]
        match &= positions[i:end] == positions[: n - k + 1] + i
    starts = np.flatnonzero(match)
    return int(starts[0]) if starts.size else None
