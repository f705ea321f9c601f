"""Factual-recall prompts, tokenized: the **facts dict** causal tracing, probes and ROME read.

:func:`tokenize_facts` turns records (``prompt``, ``subject``, ``object``, optionally the
subject's character span and the toy task's ids) into CPU tensors, B prompts, P positions:

================  =============  ============================================================
``tokens``        int64 [B, P]   prompt tokens (BOS at 0 when prepended), right-padded
``length``        int64 [B]      tokens in the prompt (BOS included)
``last``          int64 [B]      position of the prompt's last token (its logits predict the object)
``subject_first`` int64 [B]      position of the subject's first token
``subject_last``  int64 [B]      position of the subject's last token
``object``        int64 [B]      the object's token id (one token: " Seattle", "Rome")
``relation``      int64 [B]      the toy task's relation index; -1 for prompts written in YAML
``template``      int64 [B]      the toy task's template index within the relation; -1 likewise
``split``         int64 [B]      0: a training prompt of the toy task (or written in YAML);
                                 1: a held-out (subject, template) prompt
``subject_id``    int64 [B]      the subject's index (the toy world's; for YAML prompts, the
                                 order in which distinct subject strings first appear)
================  =============  ============================================================

The subject's tokens are found through the tokenizer's character offsets (as the IOI
prompts' roles are, patching/prompt_pairs.py): every token overlapping the subject's
characters. Right padding is exact for causal models: no position reads a later one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.records import check_string_records
from interp_pipeline.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

FACT_FIELDS = ("tokens", "length", "last", "subject_first", "subject_last", "object", "relation", "template",
               "split", "subject_id")
RECORD_FIELDS = ("prompt", "subject", "object")


@dataclass(frozen=True)
class FactRecord:
    prompt: str
    subject: str
    object: str  # with its leading space where the tokenizer marks one (" Seattle")
    subject_span: tuple[int, int] | None = None  # None: the subject's first occurrence in the prompt
    relation: int = -1
    template: int = -1
    heldout: bool = False
    subject_id: int | None = None


def check_records(records: Sequence[Any], key: str = "prompts") -> None:
    """A ConfigError naming ``prompts[i].field`` for a record that is not three strings, or
    whose subject does not occur in its prompt."""
    check_string_records(key, records, RECORD_FIELDS)
    for i, record in enumerate(records):
        if record["subject"] not in record["prompt"]:
            raise ConfigError(f"{key}[{i}].subject", f"{record['subject']!r} does not occur in the prompt "
                                                     f"{record['prompt']!r}")


def as_records(records: Sequence[Mapping[str, str]]) -> list[FactRecord]:
    return [FactRecord(r["prompt"], r["subject"], r["object"]) for r in records]


def tokenize_facts(tokenizer: Any, records: Sequence[FactRecord], *, prepend_bos: bool, key: str = "prompts",
                   max_len: int | None = None) -> dict[str, Tensor]:
    """The facts dict (module docstring) of ``records``; a record that does not fit is a
    ConfigError naming it: ``{key}[i].subject`` (not in the prompt, or sharing a token with
    the text around it), ``{key}[i].object`` (not one token), ``{key}[i].prompt`` (too long)."""
    import torch

    from interp_pipeline.patching.prompt_pairs import _continuation, _describe, _encode, bos_token_id, pad_token_id

    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(key, "placing the subject's tokens needs a fast (Rust) Hugging Face tokenizer, for its "
                               f"character offsets; found a {type(tokenizer).__name__}")
    if not records:
        raise ConfigError(key, "expected at least one prompt, found none")
    texts = [r.prompt for r in records]
    encoded = _encode(tokenizer, texts, [f"{key}[{i}].prompt" for i in range(len(records))])
    objects = _continuation(tokenizer, encoded, texts, [r.object for r in records],
                            [f"{key}[{i}].object" for i in range(len(records))])
    shift = int(prepend_bos)
    rows, subject_ids = [], {}
    for i, (record, enc, obj) in enumerate(zip(records, encoded, objects)):
        if len(obj) != 1:
            raise ConfigError(f"{key}[{i}].object", f"expected a single token, found {_describe(tokenizer, obj)}")
        span = record.subject_span
        if span is None:
            start = record.prompt.find(record.subject)
            if start < 0:
                raise ConfigError(f"{key}[{i}].subject", f"{record.subject!r} does not occur in the prompt "
                                                         f"{record.prompt!r}")
            span = (start, start + len(record.subject))
        covering = [k for k, (a, b) in enumerate(enc.offsets) if b > a and a < span[1] and b > span[0]]
        if not covering:
            raise ConfigError(f"{key}[{i}].subject", f"no token of the prompt covers {record.subject!r}")
        if len(enc.ids) + shift > (max_len if max_len is not None else 1 << 62):
            raise ConfigError(f"{key}[{i}].prompt", f"expected at most {max_len} tokens (the model's n_ctx), found "
                                                    f"{len(enc.ids) + shift}")
        if covering[-1] == len(enc.ids) - 1:
            # The paper's last-token position would be the subject itself: nothing left to trace apart.
            raise ConfigError(f"{key}[{i}].subject", f"expected the prompt to go on after the subject "
                                                     f"{record.subject!r}, found it at the end")
        subject_id = record.subject_id if record.subject_id is not None else subject_ids.setdefault(
            record.subject, len(subject_ids))
        rows.append((enc.ids, covering[0] + shift, covering[-1] + shift, obj[0], record, subject_id))

    width = max(len(ids) for ids, *_ in rows) + shift
    pad = pad_token_id(tokenizer)
    tokens = torch.full((len(rows), width), pad, dtype=torch.int64)
    for row, (ids, *_rest) in enumerate(rows):
        full = ([bos_token_id(tokenizer)] if prepend_bos else []) + list(ids)
        tokens[row, :len(full)] = torch.tensor(full)
    length = torch.tensor([len(ids) + shift for ids, *_ in rows])

    def column(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.int64)

    return {
        "tokens": tokens,
        "length": length,
        "last": length - 1,
        "subject_first": column([r[1] for r in rows]),
        "subject_last": column([r[2] for r in rows]),
        "object": column([r[3] for r in rows]),
        "relation": column([r[4].relation for r in rows]),
        "template": column([r[4].template for r in rows]),
        "split": column([int(r[4].heldout) for r in rows]),
        "subject_id": column([r[5] for r in rows]),
    }


def select(facts: Mapping[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
    """The facts dict of ``rows`` only."""
    return {name: value[rows] for name, value in facts.items()}
