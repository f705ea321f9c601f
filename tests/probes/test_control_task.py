"""The word_type control task against Hewitt & Liang (2019)'s own: github.com/john-hewitt/control-tasks
(be70d7f), control-tasks/task.py, ``CorruptedPartOfSpeechLabelTask`` with ``corrupted_token_percent`` 1.

Their arithmetic, restated below (``hewitt_liang_labels``): every word type of every split is
registered once, and gets a label drawn from the task's empirical label distribution over tokens
(``np.random.choice(ints, p=dist)``); each occurrence of the type then carries that label. Ours draws a
labelled row uniformly and takes its label (the same distribution, over the probed rows of both
splits; theirs is PTB's training distribution, hard-coded). The random streams differ, so the test
compares the two as laws: the label a type gets, over many seeds.
"""

from __future__ import annotations

import numpy as np

from interp_pipeline.probes.labels import ProbeRows, control_labels


def hewitt_liang_labels(tokens: np.ndarray, distribution: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    per_type: dict[int, int] = {}
    for token in tokens.tolist():  # _register_type, once per type, in order of appearance
        if token not in per_type:
            per_type[token] = int(rng.choice(len(distribution), p=distribution))
    return np.array([per_type[t] for t in tokens.tolist()])


def test_word_type_control_draws_one_label_per_type_from_the_label_distribution():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 40, 600)
    y = rng.choice(3, size=600, p=[0.6, 0.3, 0.1])
    rows = ProbeRows(rows=np.arange(600), y=y, sequence=np.arange(600) // 10, token=tokens,
                     classes=np.array([10, 20, 30]))
    distribution = np.bincount(y, minlength=3) / y.size

    ours, theirs = np.zeros(3), np.zeros(3)
    seeds = 300
    for seed in range(seeds):
        control = control_labels(rows, "word_type", seed)
        reference = hewitt_liang_labels(tokens, distribution, seed)
        for labels in (control, reference):  # one label per type, every occurrence
            for token in np.unique(tokens):
                assert len(np.unique(labels[tokens == token])) == 1
        first = np.unique(tokens, return_index=True)[1]
        ours += np.bincount(control[first], minlength=3)
        theirs += np.bincount(reference[first], minlength=3)
    types = seeds * len(np.unique(tokens))
    np.testing.assert_allclose(ours / types, distribution, atol=0.015)
    np.testing.assert_allclose(theirs / types, distribution, atol=0.015)
    assert not np.array_equal(control_labels(rows, "word_type", 0), control_labels(rows, "word_type", 1))
