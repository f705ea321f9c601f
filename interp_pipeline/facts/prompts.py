"""Factual-recall prompts, tokenized: the **facts dict** causal tracing, probes and ROME read.

The prompt-set stages make it from the toy world's prompts (:func:`toy_prompt_set`) or from
prompts written in YAML (:func:`listed_prompt_set`). :func:`tokenize_facts` turns records
(``prompt``, ``subject``, ``object``, optionally the subject's character span and the toy task's
ids) into CPU tensors, B prompts, P positions:

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
from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.facts.config import FactPromptsConfig, ToyFactPromptsConfig
    from interp_pipeline.tracking.base import Tracker

FACT_FIELDS = ("tokens", "length", "last", "subject_first", "subject_last", "object", "relation", "template",
               "split", "subject_id")
RECORD_FIELDS = ("prompt", "subject", "object")
FACT_METRICS = ("prompts", "seq_len", "heldout_prompts", "subject_tokens_mean")


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


# ---------------------------------------------------------------- the prompt sets the stages make


def toy_records(task: Any, split: str, n_prompts: int | None, seed: int) -> list[FactRecord]:
    """The toy world's prompts (``task``: the facts task, interp_pipeline.facts.task): all, the ``"train"``
    or ``"heldout"`` ones, or a sample of ``n_prompts`` drawn with ``seed`` (in the world's order)."""
    import random

    prompts = task.prompts(None if split == "all" else split)
    if n_prompts is not None and n_prompts < len(prompts):
        chosen = sorted(random.Random(seed).sample(range(len(prompts)), n_prompts))
        prompts = [prompts[i] for i in chosen]
    return [FactRecord(p.text, p.subject, " " + p.object, p.subject_span, p.relation, p.template, p.heldout,
                       p.subject_id) for p in prompts]


def toy_facts(tokenizer: Any, task: Any, settings: ToyFactPromptsConfig, max_len: int) -> dict[str, Tensor]:
    """The facts dict of the toy world's prompts ``settings`` choose; errors are keyed ``task``."""
    records = toy_records(task, settings.split, settings.n_prompts, settings.seed)
    return tokenize_facts(tokenizer, records, prepend_bos=settings.prepend_bos, key="task", max_len=max_len)


def listed_facts(tokenizer: Any, settings: FactPromptsConfig, max_len: int) -> dict[str, Tensor]:
    """The facts dict of prompts written in YAML (:func:`check_records` passed); errors name the prompt
    (``prompts[2].object``)."""
    return tokenize_facts(tokenizer, as_records(settings.prompts), prepend_bos=settings.prepend_bos,
                          max_len=max_len)


def toy_prompt_set(model: Any, task: Any, settings: ToyFactPromptsConfig, tracker: Tracker) -> dict[str, Tensor]:
    """:func:`toy_facts` under the model's tokenizer and context, its :data:`FACT_METRICS` logged."""
    from interp_pipeline.models.tokens import require_tokenizer

    return _logged(toy_facts(require_tokenizer(model, "task"), task, settings, model.cfg.n_ctx), tracker)


def listed_prompt_set(model: Any, settings: FactPromptsConfig, tracker: Tracker) -> dict[str, Tensor]:
    """:func:`listed_facts` under the model's tokenizer and context, its :data:`FACT_METRICS` logged."""
    from interp_pipeline.models.tokens import require_tokenizer

    check_records(settings.prompts)
    return _logged(listed_facts(require_tokenizer(model, "prompts"), settings, model.cfg.n_ctx), tracker)


def _logged(facts: dict[str, Tensor], tracker: Tracker) -> dict[str, Tensor]:
    subject = (facts["subject_last"] - facts["subject_first"] + 1).float()
    tracker.log_metrics({"prompts": len(facts["tokens"]), "seq_len": facts["tokens"].shape[1],
                         "heldout_prompts": int(facts["split"].sum()),
                         "subject_tokens_mean": float(subject.mean())})
    return facts


def subject_last_token(model: Any, text: str, span: tuple[int, int]) -> tuple[list[int], int]:
    """``[BOS] + text``'s ids and the index of the last token overlapping the subject's character span
    (through the tokenizer's offsets, so any tokenizer with offsets places it)."""
    from interp_pipeline.models.tokens import bos_id

    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    covering = [k for k, (a, b) in enumerate(encoded["offset_mapping"]) if b > a and a < span[1] and b > span[0]]
    if not covering:
        raise ConfigError("requests", f"expected the subject {text[span[0]:span[1]]!r} among {text!r}'s tokens, "
                                      "found none covering it")
    return [bos_id(model), *encoded["input_ids"]], covering[-1] + 1
