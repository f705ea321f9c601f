"""Packing documents into rows of tokens: each document tokenized without special tokens,
documents joined with EOS between them, the stream cut into rows of ``seq_len`` tokens, BOS
first when ``prepend_bos`` (so seq_len - 1 text tokens a row); the final partial row is dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.tokens import as_tokens, bos_id
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

_TOKENIZE_BATCH = 64  # documents per tokenizer call: fast batches, early stop stays cheap


@dataclass
class _PackCounts:
    documents: int = 0
    tokens: int = 0  # in the joined stream, separators included


def _packed_rows(texts: Iterable[str], tokenizer: Any, body_len: int, counts: _PackCounts) -> Iterator[list[int]]:
    """Rows of ``body_len`` tokens from the documents joined by EOS; the partial tail is dropped.

    Documents that are empty or only whitespace are skipped (so no EOS pair appears).
    """
    separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    if separator is None:
        raise ValueError("the tokenizer has no EOS (nor BOS) token to put between documents")
    buffer: list[int] = []
    texts = (t for t in texts if t.strip())
    while batch := list(itertools.islice(texts, _TOKENIZE_BATCH)):
        # verbose=False: long documents are expected, the model-length warning is noise here.
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            if not ids:
                continue
            if counts.documents:
                buffer.append(separator)
                counts.tokens += 1
            buffer.extend(ids)
            counts.documents += 1
            counts.tokens += len(ids)
        n_full = len(buffer) // body_len
        for i in range(n_full):
            yield buffer[i * body_len:(i + 1) * body_len]
        del buffer[:n_full * body_len]


def pack_documents(
    model: HookedTransformer,
    texts: Iterable[str],
    seq_len: int,
    max_sequences: int | None,
    prepend_bos: bool,
    source: str,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Tokenize and pack ``texts`` (see the module docstring); stops reading at max_sequences rows."""
    tokenizer = model.tokenizer
    body_len = seq_len - 1 if prepend_bos else seq_len
    prefix = [bos_id(model)] if prepend_bos else []
    counts = _PackCounts()
    rows = itertools.islice(_packed_rows(texts, tokenizer, body_len, counts), max_sequences)
    packed = [prefix + row for row in progress(rows, desc=f"packing {source}", total=max_sequences, unit="seq")]
    if not packed:
        with_bos = " with BOS" if prepend_bos else ""
        raise ConfigError("seq_len", f"expected at least {body_len} tokens from {source} for one row of "
                                     f"seq_len={seq_len}{with_bos}, found {counts.tokens} (EOS between "
                                     f"documents included) in {counts.documents} documents",
                          suggestion="lower seq_len or give more text")
    tokens = as_tokens(packed, model)
    tracker.log_metrics({"n_sequences": len(packed), "seq_len": seq_len, "n_documents": counts.documents,
                         "n_tokens_read": counts.tokens})
    return tokens
