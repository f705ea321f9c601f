"""Probe labels: what label stages emit (and how each makes its labels), and lining them up with an
activation store's rows.

A label stage returns ``{"labels": int64 [n_sequences, seq_len], "tokens": int64 [n_sequences, seq_len]}``:
the label of each (sequence, position) (-1 where there is none) and the tokens they were made from.
A store row is (sequence, position, token id); a row is labelled where ``labels[sequence, position]``
>= 0, and every row's token id must be the labels' token there, so labels made from other sequences
than the store's are refused rather than silently mismatched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.probes.config import CONTROLS

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.probes.config import FactLabelsConfig
    from interp_pipeline.tracking.base import Tracker

UNLABELLED = -1


@dataclass(frozen=True)
class LabelsShape:
    """What pre-flight knows of a label stage's output: the token grid the labels are laid over."""

    n_sequences: int | None
    seq_len: int | None


@dataclass(frozen=True)
class ProbeRows:
    """The labelled rows of a store: row indices (ascending), their labels as class indices 0..k-1,
    their sequence and token id, and the label values the classes stand for."""

    rows: np.ndarray
    y: np.ndarray
    sequence: np.ndarray
    token: np.ndarray
    classes: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def label_grid(labels: Any, tokens: Any) -> dict[str, Any]:
    """The label stages' output format, from a labels grid and its tokens (tensors or arrays)."""
    import torch

    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    tokens_t = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
    if labels_t.shape != tokens_t.shape or labels_t.ndim != 2:
        raise ValueError(f"labels {list(labels_t.shape)} and tokens {list(tokens_t.shape)} must be one 2-d grid")
    return {"labels": labels_t, "tokens": tokens_t}


def repeated_half(tokens: Tensor, prepend_bos: bool, tracker: Tracker) -> dict[str, Any]:
    """Per token of an induction probe ([BOS] r r): 1 in the repeated (second) half, 0 in the first, BOS unlabelled."""
    import torch

    n, width = tokens.shape
    half = (width - int(prepend_bos)) // 2
    if width - int(prepend_bos) != 2 * half:
        raise ConfigError("tokens", f"expected a repeated_tokens probe ([BOS] r r), found length {width}")
    labels = torch.full((n, width), -1, dtype=torch.int64)
    start = int(prepend_bos)
    labels[:, start:start + half] = 0
    labels[:, start + half:] = 1
    tracker.log_metrics({"n_labelled": int((labels >= 0).sum())})
    return label_grid(labels, tokens)


def answers_at_end(pairs: Mapping[str, Tensor], tracker: Tracker) -> dict[str, Any]:
    """Prompt pairs' answers as labels at END of the clean prompts, and those prompts as ``tokens``
    (the label stages' two outputs)."""
    import torch

    clean = pairs["clean"]
    labels = torch.full(clean.shape, -1, dtype=torch.int64)
    labels[torch.arange(clean.shape[0]), pairs["end"].long()] = pairs["answer"].long()
    return _with_tokens(label_grid(labels, clean), tracker)


def fact_grid(task: Mapping[str, Any]) -> tuple[int, int]:
    """The toy facts world's labels grid: every prompt, [BOS] + its longest prompt's words."""
    from interp_pipeline.facts.world import longest_prompt_words
    from interp_pipeline.facts.task import facts_task

    return len(facts_task(task).prompts()), longest_prompt_words() + 1


def fact_labels(model: Any, settings: FactLabelsConfig, tracker: Tracker) -> dict[str, Any]:
    """Every prompt of the toy facts world as ``tokens`` ([BOS] prompt, right-padded), labelled at
    ``settings.position`` with the prompt's own object or the subject's object in ``settings.relation``
    (the label stages' two outputs)."""
    import torch

    from interp_pipeline.facts.prompts import subject_last_token
    from interp_pipeline.facts.world import RELATION_NAMES, RELATIONS, objects_of
    from interp_pipeline.facts.task import facts_task

    made = facts_task(settings.task)
    objects = objects_of(made.n_subjects, made.seed)
    tokens = torch.full(fact_grid(settings.task), int(model.tokenizer.pad_token_id), dtype=torch.int64)
    labels = torch.full_like(tokens, -1)
    for row, prompt in enumerate(made.prompts()):
        ids, subject_last = subject_last_token(model, prompt.text, prompt.subject_span)
        tokens[row, :len(ids)] = torch.as_tensor(ids)
        if settings.relation == "own":
            word = prompt.object
        else:
            index = RELATION_NAMES.index(settings.relation)
            word = RELATIONS[settings.relation][1][objects[prompt.subject_id][index]]
        labels[row, subject_last if settings.position == "subject_last" else len(ids) - 1] = \
            int(model.tokenizer.convert_tokens_to_ids(word))
    return _with_tokens(label_grid(labels, tokens), tracker)


def _with_tokens(grid: dict[str, Any], tracker: Tracker) -> dict[str, Any]:
    """A label stage's two outputs (the grid, and its tokens for cache_activations), its counts logged."""
    labelled = grid["labels"][grid["labels"] >= 0]
    tracker.log_metrics({"n_labelled": int(labelled.numel()), "n_classes": int(labelled.unique().numel())})
    return {"labels": grid, "tokens": grid["tokens"].clone()}


def check_labels_fit_store(key: str, labels: LabelsShape | None, store: Any) -> None:
    """Pre-flight: the label grid must be the store's sequences (count and length), when both are known."""
    if labels is None or store is None:
        return
    store_n, store_len = getattr(store, "n_sequences", None), getattr(store, "seq_len", None)
    if labels.n_sequences is not None and store_n is not None and labels.n_sequences != store_n:
        raise ConfigError(key, f"expected labels for the store's {store_n} sequences, found labels for "
                               f"{labels.n_sequences}: the label stage's rows do not match the store's",
                          suggestion="make the labels from the dataset the store was cached from")
    if labels.seq_len is not None and store_len is not None and labels.seq_len != store_len:
        raise ConfigError(key, f"expected labels over sequences of the store's {store_len} positions, found "
                               f"{labels.seq_len}: the label stage's rows do not match the store's",
                          suggestion="make the labels from the dataset the store was cached from")


def probe_rows(store: Any, labels: dict[str, Any], key: str = "inputs.labels") -> ProbeRows:
    """The store's labelled rows; ConfigError (on ``key``) when the labels are not the store's sequences."""
    grid = np.asarray(labels["labels"], dtype=np.int64)
    tokens = np.asarray(labels["tokens"], dtype=np.int64)
    sequence, position, token = store.sequences(), store.positions(), store.token_ids()
    if sequence.size == 0:
        raise ConfigError(key, f"expected a store with rows, found an empty store ({store.url})")
    if int(sequence.max()) >= grid.shape[0] or int(position.max()) >= grid.shape[1]:
        raise ConfigError(key, f"expected labels covering the store's sequences (up to sequence "
                               f"{int(sequence.max())}, position {int(position.max())}), found a "
                               f"{grid.shape[0]} x {grid.shape[1]} label grid: the label stage's rows do not "
                               "match the store's")
    expected = tokens[sequence, position]
    wrong = np.flatnonzero(expected != token)
    if wrong.size:
        row = int(wrong[0])
        raise ConfigError(key, f"expected the store's tokens under the labels, found {wrong.size} rows that differ "
                               f"(row {row}: sequence {int(sequence[row])}, position {int(position[row])} holds "
                               f"token {int(token[row])}, the labels were made for {int(expected[row])}): the label "
                               "stage's rows do not match the store's")
    values = grid[sequence, position]
    rows = np.flatnonzero(values != UNLABELLED)
    if rows.size == 0:
        raise ConfigError(key, "expected labelled positions among the store's rows, found none (the store's "
                               "`positions` may leave out the labelled ones)")
    classes, y = np.unique(values[rows], return_inverse=True)
    if classes.size < 2:
        raise ConfigError(key, f"expected at least two label values to probe for, found only {classes.tolist()}")
    return ProbeRows(rows, y.astype(np.int64), sequence[rows].astype(np.int64), token[rows].astype(np.int64),
                     classes)


def heldout_mask(sequence: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for rows of held-out sequences: whole sequences are held out, so no prompt is seen in both."""
    unique = np.unique(sequence)
    n_heldout = int(round(fraction * unique.size))
    if not 0 < n_heldout < unique.size:
        raise ConfigError("heldout_fraction", f"expected a fraction that holds out some but not all of the "
                                              f"{unique.size} labelled sequences, found {fraction}")
    picked = np.random.default_rng([seed, 1]).permutation(unique)[:n_heldout]
    return np.isin(sequence, picked)


def control_labels(rows: ProbeRows, kind: str, seed: int) -> np.ndarray:
    """Labels for the control task, whose accuracy a probe reaches by memorising, not by reading the property.

    ``shuffle``: the labels permuted across rows (chance for any probe that generalises). ``word_type``:
    Hewitt & Liang (2019)'s control task: each token type gets a label drawn from the labels' empirical
    distribution, fixed for all its occurrences, so a probe can reach it only by memorising types.
    """
    rng = np.random.default_rng([seed, 2])
    if kind == "shuffle":
        return rows.y[rng.permutation(rows.y.size)]
    if kind == "word_type":
        types, inverse = np.unique(rows.token, return_inverse=True)
        per_type = rows.y[rng.integers(0, rows.y.size, types.size)]
        return per_type[inverse]
    raise ConfigError("control", f"expected one of {', '.join(CONTROLS)}, found '{kind}'")
