"""Prompt pairs for activation patching: clean and corrupted texts, tokenized and aligned.

Patching copies an activation at position p of the clean run into position p of the
corrupted run, so a pair is only usable when its two prompts line up token for token.
:func:`tokenize_pairs` turns text records into the **pairs dict** the patching engine
reads (patching/engine.py, patching/metrics.py), all CPU tensors, B pairs, P positions:

==============  =============  ==============================================================
``clean``       int64 [B, P]   clean prompt tokens (BOS at 0 when prepended), right-padded
``corrupted``   int64 [B, P]   corrupted prompt tokens, same length as its clean prompt
``answer``      int64 [B]      the token the clean prompt should predict (IO, " Mary")
``wrong``       int64 [B]      the competing token (S, " John"); logit_diff = answer - wrong
``end``         int64 [B]      position of the prompt's last token, whose logits predict the answer
``length``      int64 [B]      tokens in the prompt (BOS included) = end + 1
``targets``     int64 [B, P]   next-token ids of the clean run: clean[p + 1] before END, the
                               answer at END, pad after it
``loss_mask``   bool [B, P]    positions the ``loss`` metric averages over (END by default)
``<role>_pos``  int64 [B]      for records with role spans (IOI: ``io_pos``, ``s1_pos``,
                               ``s2_pos``), the role's token position in both prompts
==============  =============  ==============================================================

Rows are right-padded with the tokenizer's pad token (EOS, then BOS, where it has none)
to the longest prompt. For causal models that is exact: no position attends to a later
one, and every metric reads each prompt's own END.

Role spans are character spans; the tokenizer's offsets place them. A generated pair
(one with role spans) that does not line up is dropped and counted. A pair written by
hand (no spans) that does not line up is a ConfigError naming it: it is a mistake in
the config, not a draw to discard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

if TYPE_CHECKING:
    from torch import Tensor

TEXT_FIELDS = ("clean", "corrupted", "answer", "wrong")
LOSS_POSITIONS = ("end", "all")
Span = tuple[int, int]


@dataclass(frozen=True)
class PromptPair:
    clean: str
    corrupted: str
    answer: str
    wrong: str
    # role -> (start, end) character span of the role's word in each text; None: written by hand
    clean_spans: Mapping[str, Span] | None = None
    corrupted_spans: Mapping[str, Span] | None = None


def as_prompt_pair(record: Any) -> PromptPair:
    """A PromptPair from a mapping (a YAML pair) or an object with the same attributes (IOIPrompt)."""
    get = record.get if isinstance(record, Mapping) else lambda name, default=None: getattr(record, name, default)
    return PromptPair(*(get(name) for name in TEXT_FIELDS),
                      clean_spans=get("clean_spans"), corrupted_spans=get("corrupted_spans"))


def bos_token_id(tokenizer: Any) -> int:
    """BOS as interp_pipeline.models.tokens.bos_id picks it: the tokenizer's BOS, else its EOS."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ConfigError("prepend_bos", "the model's tokenizer has no BOS (nor EOS) token; set prepend_bos: false")
    return bos


def pad_token_id(tokenizer: Any) -> int:
    """The pad token, else EOS, else BOS (as stages/token_datasets.py's ``prompt_tokens`` pads)."""
    for token in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if token is not None:
            return token
    return 0


# ---------------------------------------------------------------- tokenizing


@dataclass
class _Encoded:
    ids: list[int]
    offsets: list[Span]


def _encode(tokenizer: Any, texts: list[str], labels: list[str]) -> list[_Encoded]:
    """Token ids and character offsets, without special tokens; one batched call (a fast
    tokenizer encodes thousands of prompts at once). A text the tokenizer cannot encode
    (a word outside a word-level vocabulary) is a ConfigError naming ``labels[i]``."""
    try:
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # noqa: BLE001  (tokenizers raise plain Exceptions; find the text that did it)
        for text, label in zip(texts, labels):
            try:
                tokenizer(text, add_special_tokens=False)
            except Exception as error:  # noqa: BLE001
                raise ConfigError(label, f"the model's tokenizer cannot encode {text!r} ({error})") from error
        raise
    return [_Encoded(list(ids), [tuple(o) for o in offsets])
            for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"])]


def _continuation(tokenizer: Any, prompts: list[_Encoded], texts: list[str], completions: list[str],
                  labels: list[str]) -> list[list[int]]:
    """The tokens each completion adds to its prompt, as the model sees it after the prompt.

    Tokenizing " Mary" alone gives the same as after "to" for GPT-2, but not for a
    SentencePiece tokenizer (which marks the space itself); where the prompt's tokens
    change with the completion appended, the completion is tokenized alone.
    """
    joined = _encode(tokenizer, [t + c for t, c in zip(texts, completions)], labels)
    alone = None
    result = []
    for i, (prompt, full) in enumerate(zip(prompts, joined)):
        n = len(prompt.ids)
        if full.ids[:n] == prompt.ids:
            result.append(full.ids[n:])
        else:
            if alone is None:
                alone = _encode(tokenizer, list(completions), labels)
            result.append(alone[i].ids)
    return result


def _role_token(encoded: _Encoded, text: str, span: Span) -> int | None:
    """The index of the one token covering ``text[span]`` (leading space aside), or None
    when the word is split over several tokens or shares its token with other text."""
    start, end = span
    covering = [k for k, (a, b) in enumerate(encoded.offsets) if b > a and a < end and b > start]
    if len(covering) != 1:
        return None
    a, b = encoded.offsets[covering[0]]
    return covering[0] if text[a:b].strip() == text[start:end].strip() else None


def _describe(tokenizer: Any, ids: list[int]) -> str:
    return f"{len(ids)} token{'s' if len(ids) != 1 else ''} {[tokenizer.decode([t]) for t in ids]}"


# ---------------------------------------------------------------- aligning


def tokenize_pairs(
    tokenizer: Any,
    records: Sequence[Any],
    *,
    prepend_bos: bool,
    min_pairs: int = 1,
    key: str = "pairs",
    max_len: int | None = None,
    loss_positions: str = "end",
) -> tuple[dict[str, Tensor], int]:
    """Tokenize clean/corrupted/answer/wrong records into the pairs dict (see the module docstring).

    ``records``: mappings or objects with ``clean``, ``corrupted``, ``answer``, ``wrong`` and
    optionally ``clean_spans`` / ``corrupted_spans`` (role -> character span; "end" is the
    prompt's last word). ``tokenizer``: a Hugging Face fast tokenizer (offsets are needed to
    place the roles). A pair is aligned when both prompts have the same number of tokens,
    every role is one token at the same position in both, the END role is the last token,
    answer and wrong are one token each and differ, and the prompt fits in ``max_len``.

    Returns ``(pairs, n_dropped)``. Records with spans that are not aligned are dropped;
    fewer than ``min_pairs`` left is a ConfigError naming ``key``. A record without spans
    that is not aligned is a ConfigError naming it: ``{key}[i].answer`` etc.
    """
    if loss_positions not in LOSS_POSITIONS:
        raise ConfigError("loss_positions", f"expected one of {one_of(LOSS_POSITIONS)}, found {loss_positions!r}",
                          suggestion=did_you_mean(str(loss_positions), LOSS_POSITIONS))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(key, "placing prompt tokens needs a fast (Rust) Hugging Face tokenizer, for its "
                               f"character offsets; found a {type(tokenizer).__name__}")
    pairs = [as_prompt_pair(r) for r in records]
    if not pairs:
        raise ConfigError(key, "expected at least one prompt pair, found none")
    for i, pair in enumerate(pairs):
        for name in TEXT_FIELDS:
            if not isinstance(getattr(pair, name), str):
                raise ConfigError(f"{key}[{i}].{name}", f"expected a string, found {getattr(pair, name)!r}")
    cleans = [p.clean for p in pairs]
    corrupteds = [p.corrupted for p in pairs]
    clean = _encode(tokenizer, cleans, [f"{key}[{i}].clean" for i in range(len(pairs))])
    corrupted = _encode(tokenizer, corrupteds, [f"{key}[{i}].corrupted" for i in range(len(pairs))])
    answers = _continuation(tokenizer, clean, cleans, [p.answer for p in pairs],
                            [f"{key}[{i}].answer" for i in range(len(pairs))])
    wrongs = _continuation(tokenizer, clean, cleans, [p.wrong for p in pairs],
                           [f"{key}[{i}].wrong" for i in range(len(pairs))])
    shift = int(prepend_bos)

    kept: list[tuple[int, dict[str, int]]] = []  # (record index, role -> position)
    reasons: Counter[str] = Counter()
    for i, pair in enumerate(pairs):
        problem, positions = _align(tokenizer, pair, clean[i], corrupted[i], answers[i], wrongs[i],
                                    shift=shift, max_len=max_len)
        if problem is None:
            kept.append((i, positions))
            continue
        reason, field_name, message = problem
        if pair.clean_spans is None:
            raise ConfigError(f"{key}[{i}].{field_name}", message)
        reasons[reason] += 1

    dropped = len(pairs) - len(kept)
    if len(kept) < min_pairs:
        why = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        raise ConfigError(key, f"expected at least {min_pairs} aligned prompt pairs, found {len(kept)} of "
                               f"{len(pairs)} ({dropped} dropped: {why or 'none'})")

    return _pairs_tensors(tokenizer, kept, clean, corrupted, answers, wrongs, prepend_bos=prepend_bos,
                          loss_positions=loss_positions), dropped


def _pairs_tensors(tokenizer: Any, kept: list[tuple[int, dict[str, int]]], clean: Any, corrupted: Any,
                   answers: Any, wrongs: Any, *, prepend_bos: bool, loss_positions: str) -> dict[str, Tensor]:
    """The pairs dict of the aligned records ``kept`` (record index, role -> position), right-padded."""
    import torch

    shift = int(prepend_bos)
    pad = pad_token_id(tokenizer)
    bos = bos_token_id(tokenizer) if prepend_bos else None
    lengths = [len(clean[i].ids) + shift for i, _ in kept]
    width = max(lengths)
    n = len(kept)
    out = {
        "clean": torch.full((n, width), pad, dtype=torch.int64),
        "corrupted": torch.full((n, width), pad, dtype=torch.int64),
        "answer": torch.tensor([answers[i][0] for i, _ in kept], dtype=torch.int64),
        "wrong": torch.tensor([wrongs[i][0] for i, _ in kept], dtype=torch.int64),
        "end": torch.tensor(lengths, dtype=torch.int64) - 1,
        "length": torch.tensor(lengths, dtype=torch.int64),
        "targets": torch.full((n, width), pad, dtype=torch.int64),
        "loss_mask": torch.zeros((n, width), dtype=torch.bool),
    }
    for row, (i, _) in enumerate(kept):
        length = lengths[row]
        for name, encoded in (("clean", clean[i]), ("corrupted", corrupted[i])):
            ids = ([bos] if bos is not None else []) + encoded.ids
            out[name][row, :length] = torch.tensor(ids, dtype=torch.int64)
        end = length - 1
        out["targets"][row, :end] = out["clean"][row, 1:length]
        out["targets"][row, end] = out["answer"][row]
        if loss_positions == "end":
            out["loss_mask"][row, end] = True
        else:
            out["loss_mask"][row, :length] = True
    # Role positions only where every kept pair has the role (IOI prompts all have io, s1, s2).
    roles = set.intersection(*(set(positions) for _, positions in kept)) - {"end"}
    for role in sorted(roles):
        out[f"{role}_pos"] = torch.tensor([positions[role] for _, positions in kept], dtype=torch.int64)
    return out


def _align(
    tokenizer: Any, pair: PromptPair, clean: _Encoded, corrupted: _Encoded, answer: list[int], wrong: list[int],
    *, shift: int, max_len: int | None,
) -> tuple[tuple[str, str, str] | None, dict[str, int]]:
    """``(None, role positions)`` for an aligned pair, else ``((reason, field, message), {})``;
    ``reason`` is what the drop count reports, ``field`` and ``message`` what a ConfigError says."""
    length = len(clean.ids) + shift
    if not clean.ids and not shift:
        return ("empty prompts", "clean", "expected at least one token (or prepend_bos: true), found none"), {}
    if len(corrupted.ids) != len(clean.ids):
        return ("with clean and corrupted of different lengths", "corrupted",
                f"expected as many tokens as the clean prompt ({len(clean.ids)}), found {len(corrupted.ids)}: "
                f"patching needs the two prompts aligned token for token"), {}
    if max_len is not None and length > max_len:
        return (f"longer than n_ctx={max_len}", "clean",
                f"expected at most n_ctx={max_len} tokens, found {length}"), {}
    for field_name, ids in (("answer", answer), ("wrong", wrong)):
        if len(ids) != 1:
            return (f"with a multi-token {field_name}", field_name,
                    f"expected a single token, found {_describe(tokenizer, ids)}"), {}
    if answer == wrong:
        return ("with answer = wrong", "wrong",
                f"expected a token other than the answer's, found the same {_describe(tokenizer, answer)}"), {}
    positions: dict[str, int] = {}
    if pair.clean_spans is None:
        return None, positions
    for role, span in pair.clean_spans.items():
        at_clean = _role_token(clean, pair.clean, span)
        other = (pair.corrupted_spans or {}).get(role)
        at_corrupted = _role_token(corrupted, pair.corrupted, other) if other is not None else at_clean
        if at_clean is None or at_corrupted is None:
            return (f"with {role} not one token", "clean", f"role {role} is not one token"), {}
        if at_clean != at_corrupted:
            return (f"with {role} at different positions", "corrupted", f"role {role} moved"), {}
        positions[role] = at_clean + shift
    if "end" in positions and positions["end"] != length - 1:
        return ("with end not the last token", "clean", "role end is not the last token"), {}
    return None, positions
