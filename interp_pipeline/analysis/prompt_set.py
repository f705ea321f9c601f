"""The sequences a look-inside stage reads, whatever made them: text prompts, a token dataset, or prompt pairs.

``inspect_model`` and ``logit_lens`` take three kinds of input, and this turns each into
one :class:`PromptSet`: every sequence's own tokens (no padding) and, per position, the
token that should come next (its *target*; -1 where none is known):

- text prompts (a param): each prompt's own next tokens, and at its last position the
  ``answer`` when one is given (" Paris" after "The Eiffel Tower is located in");
- a token dataset ``[batch, pos]`` (the repeated-token probe): each row's actual next token;
- prompt pairs (``ioi_prompts``, ``prompt_pairs``: interp_pipeline/patching/prompt_pairs.py):
  the clean prompt up to its ``length``, with the pairs' own ``targets`` (the answer at END).

``positions`` picks where per-position results are read: ``last`` (each sequence's last
token: the answer's position for prompts and pairs), ``all``, ``START:STOP`` (a Python
slice, negatives from the end) or a list of indices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

NO_TARGET = -1
_SLICE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


@dataclass
class PromptSet:
    tokens: list[Tensor]  # int64 [pos] per sequence, BOS included where prepended
    targets: list[Tensor]  # int64 [pos] per sequence: the next token, NO_TARGET where unknown
    str_tokens: list[list[str]]
    texts: list[str]  # each sequence as text, for titles
    kind: str  # prompts, tokens or pairs

    def __len__(self) -> int:
        return len(self.tokens)

    def label(self, index: int, max_chars: int = 60) -> str:
        """A sequence's text for titles, on one line, cut to ``max_chars``."""
        text = " ".join(self.texts[index].split())
        return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


# ---------------------------------------------------------------- positions


def check_positions(key: str, positions: Any) -> None:
    """``positions`` is ``last``, ``all``, ``START:STOP`` or a non-empty list of integers."""
    if positions in ("last", "all"):
        return
    if isinstance(positions, str) and _SLICE.match(positions):
        return
    if (isinstance(positions, Sequence) and not isinstance(positions, str) and positions
            and all(isinstance(p, int) and not isinstance(p, bool) for p in positions)):
        return
    raise ConfigError(key, f"expected last, all, START:STOP or a list of positions, found {positions!r}")


def select_positions(positions: Any, length: int, key: str = "positions") -> list[int]:
    """The positions ``positions`` picks in a sequence of ``length`` tokens (ascending, none twice)."""
    check_positions(key, positions)
    if positions == "last":
        return [length - 1]
    if positions == "all":
        return list(range(length))
    if isinstance(positions, str):
        start, stop = (int(p) if p else None for p in _SLICE.match(positions).groups())  # type: ignore[union-attr]
        picked = list(range(length))[slice(start, stop)]
    else:
        for p in positions:
            if not -length <= p < length:
                raise ConfigError(key, f"expected positions in {-length}..{length - 1} (a sequence of {length} "
                                       f"tokens), found {p}")
        picked = sorted({p % length for p in positions})
    if not picked:
        raise ConfigError(key, f"expected at least one position of a sequence of {length} tokens, found none "
                               f"in {positions!r}")
    return picked


# ---------------------------------------------------------------- building a PromptSet


def str_tokens_of(model: Any, tokens: Tensor) -> list[str]:
    """Each token as the tokenizer decodes it alone (as ``to_str_tokens``); ids as text without a tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    ids = [int(t) for t in tokens]
    if tokenizer is None:
        return [str(i) for i in ids]
    return [tokenizer.decode([i]) for i in ids]


def text_of(model: Any, tokens: Tensor) -> str:
    """A sequence decoded without its special tokens (BOS), as a title shows it."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return " ".join(str(int(t)) for t in tokens)
    return tokenizer.decode([int(t) for t in tokens], skip_special_tokens=True)


def answer_id(tokenizer: Any, answer: str, key: str = "answer") -> int:
    """The one token ``answer`` is under ``tokenizer``; several tokens, or an unknown word, is a ConfigError."""
    try:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    except Exception as error:  # noqa: BLE001  (a word-level tokenizer without unk raises a plain Exception)
        raise ConfigError(key, f"the model's tokenizer cannot encode {answer!r} ({error})") from None
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise ConfigError(key, f"expected one token under the model's tokenizer, found {answer!r} = {len(ids)} "
                               f"tokens {pieces}")
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise ConfigError(key, f"expected a word the model's tokenizer knows, found {answer!r} (unknown)")
    return int(ids[0])


def prompt_token_ids(tokenizer: Any, prompt: str, prepend_bos: bool, key: str) -> list[int]:
    """A prompt's tokens as ``model.to_tokens`` makes them (BOS first when ``prepend_bos``)."""
    try:
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    except Exception as error:  # noqa: BLE001
        raise ConfigError(key, f"the model's tokenizer cannot encode {prompt!r} ({error})") from None
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise ConfigError(key, f"expected words the model's tokenizer knows, found {prompt!r} (unknown words)")
    if prepend_bos:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids.insert(0, bos)
    return ids


def from_prompts(model: Any, prompts: Sequence[str], answer: str | None, prepend_bos: bool) -> PromptSet:
    import torch

    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError("prompts", "tokenizing text needs the model's tokenizer, and this model has none")
    final = NO_TARGET if answer is None else answer_id(tokenizer, answer)
    tokens, targets = [], []
    for i, prompt in enumerate(prompts):
        ids = torch.tensor(prompt_token_ids(tokenizer, prompt, prepend_bos, f"prompts[{i}]"), dtype=torch.int64)
        tokens.append(ids)
        targets.append(torch.cat([ids[1:], torch.tensor([final])]))
    return PromptSet(tokens, targets, [str_tokens_of(model, t) for t in tokens], list(prompts), "prompts")


def from_tokens(model: Any, tokens: Tensor) -> PromptSet:
    import torch

    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"expected tokens of shape [batch >= 1, pos >= 1], found {tuple(tokens.shape)}")
    rows = [row.cpu() for row in tokens]
    targets = [torch.cat([row[1:], torch.tensor([NO_TARGET])]) for row in rows]
    return PromptSet(rows, targets, [str_tokens_of(model, r) for r in rows], [text_of(model, r) for r in rows],
                     "tokens")


def from_pairs(model: Any, pairs: Mapping[str, Tensor]) -> PromptSet:
    """The clean prompts of patching pairs, each cut to its length, with the pairs' targets (answer at END)."""
    lengths = [int(n) for n in pairs["length"]]
    rows = [pairs["clean"][i, :n].cpu() for i, n in enumerate(lengths)]
    targets = [pairs["targets"][i, :n].cpu().clone() for i, n in enumerate(lengths)]
    return PromptSet(rows, targets, [str_tokens_of(model, r) for r in rows], [text_of(model, r) for r in rows],
                     "pairs")


def prompt_set(model: Any, *, tokens: Tensor | None, pairs: Mapping[str, Tensor] | None,
               prompts: Sequence[str] | None, answer: str | None, prepend_bos: bool) -> PromptSet:
    """Exactly one source of sequences: the ``tokens`` or ``pairs`` input, or the ``prompts`` param."""
    given = [name for name, value in (("tokens", tokens), ("pairs", pairs), ("prompts", prompts)) if value is not None]
    if len(given) != 1:
        raise ConfigError("prompts", f"expected exactly one of the tokens input, the pairs input or prompts, "
                                     f"found {', '.join(given) or 'none'}")
    if answer is not None and prompts is None:
        raise ConfigError("answer", "expected no answer when the input brings its own next tokens "
                                    "(a token dataset, or pairs with their answers)")
    if tokens is not None:
        return from_tokens(model, tokens)
    if pairs is not None:
        return from_pairs(model, pairs)
    return from_prompts(model, list(prompts or []), answer, prepend_bos)


def batches(prompts: PromptSet, batch_size_prompts: int) -> list[list[int]]:
    """Indices of sequences run together: equal lengths only, so no padding ever reaches the model."""
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(prompts.tokens):
        by_length.setdefault(len(seq), []).append(i)
    return [group[j:j + batch_size_prompts] for group in by_length.values()
            for j in range(0, len(group), batch_size_prompts)]


# ---------------------------------------------------------------- pre-flight (the stages' checks)


def check_prompt_settings(settings: Any) -> None:
    """The settings alone (an InspectConfig or LogitLensConfig): ``positions``, and ``prompts`` a
    non-empty list of non-empty strings when given."""
    check_positions("positions", settings.positions)
    prompts = settings.prompts
    if prompts is not None:
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ConfigError("prompts", f"expected a non-empty list of strings, found {prompts!r}")
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt:
                raise ConfigError(f"prompts[{i}]", f"expected a non-empty string, found {prompt!r}")


def check_prompt_sources(settings: Any, inputs: Mapping[str, Any]) -> None:
    """Exactly one source of sequences (a data stage's ``tokens`` or ``pairs``, or ``prompts``), then,
    where the model's tokenizer is within reach, every prompt and the answer against it."""
    fed = [name for name in inputs if name in ("tokens", "pairs")]
    prompts, answer = settings.prompts, getattr(settings, "answer", None)
    if fed and prompts is not None:
        raise ConfigError("prompts", f"expected none: this pipeline feeds the stage its sequences (the {fed[0]} "
                                     f"input), found {len(prompts)} prompts; drop them or use a pipeline without "
                                     "a data stage")
    if not fed and prompts is None:
        raise ConfigError("prompts", "expected a non-empty list of strings (this pipeline has no data stage), "
                                     "found none")
    if fed and answer is not None:
        raise ConfigError("answer", f"expected none: the {fed[0]} input brings every sequence's next tokens, "
                                    f"found {answer!r}")
    model = inputs.get("model")
    n_sequences = len(prompts) if prompts is not None else getattr(inputs.get("tokens"), "n_sequences", None)
    show = settings.show_prompt
    if n_sequences is not None and show >= n_sequences:
        raise ConfigError("show_prompt", f"expected a sequence index below {n_sequences}, found {show}")
    if model is None:
        return
    lengths = _prompt_lengths(settings, model) if prompts is not None else []
    tokens_shape = inputs.get("tokens") if fed == ["tokens"] else None
    if tokens_shape is not None and tokens_shape.seq_len is not None:
        lengths = [tokens_shape.seq_len]
    for length in lengths or []:
        select_positions(settings.positions, length)


def _prompt_lengths(settings: Any, model: Any) -> list[int] | None:
    """Each prompt's length in tokens (None without the tokenizer); too long, unknown words, or an
    answer of several tokens is a ConfigError on its key."""
    tokenizer = model.tokenizer
    if tokenizer is None:
        return None
    lengths = []
    for i, prompt in enumerate(settings.prompts):
        length = len(prompt_token_ids(tokenizer, prompt, settings.prepend_bos, f"prompts[{i}]"))
        if length > model.n_ctx:
            raise ConfigError(f"prompts[{i}]", f"expected at most n_ctx={model.n_ctx} tokens, found {length}")
        lengths.append(length)
    answer = getattr(settings, "answer", None)
    if answer is not None:
        answer_id(tokenizer, answer)
    return lengths
