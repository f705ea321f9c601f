"""Prompt-pair datasets for activation patching: IOI prompts generated in code, pairs listed in
YAML, and clean/corrupted induction probes.

Every stage takes the model first (its tokenizer, ``cfg.n_ctx`` and ``cfg.d_vocab``) and
return ``pairs``: the dict of CPU tensors described in interp_pipeline/patching/prompt_pairs.py
(clean and corrupted tokens, answer and wrong tokens, END positions, loss targets, and
for IOI the io/s1/s2 positions), which the patching stages read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.ranges import require_int
from interp_pipeline.config.records import check_string_records
from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.models.tokens import as_tokens, plain_token_ids, require_tokenizer
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tasks.ioi_prompts import ORDERS, check_options, generate_ioi
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

PAIR_FIELDS = ("clean", "corrupted", "answer", "wrong")


def _check_loss_positions(params: Mapping[str, Any]) -> None:
    from interp_pipeline.patching.prompt_pairs import LOSS_POSITIONS

    value = params.get("loss_positions", "end")
    if value not in LOSS_POSITIONS:
        raise ConfigError("loss_positions", f"expected one of {one_of(LOSS_POSITIONS)}, found {value!r}",
                          suggestion=did_you_mean(str(value), LOSS_POSITIONS))


def _checked_pairs(model: HookedTransformer, pairs: dict[str, Tensor]) -> dict[str, Tensor]:
    # A tokenizer larger than the embedding would only fail later, deep in the model.
    for name in ("clean", "corrupted", "answer", "wrong"):
        as_tokens(pairs[name], model)
    return pairs


def _log(tracker: Tracker, pairs: dict[str, Tensor], dropped: int) -> None:
    lengths = pairs["length"]
    tracker.log_metrics({
        "pairs_kept": len(lengths),
        "pairs_dropped": dropped,
        "seq_len": pairs["clean"].shape[1],
        "pad_fraction": 1 - float(lengths.sum()) / pairs["clean"].numel(),
    })


# ---------------------------------------------------------------- IOI


def _check_ioi_params(params: dict[str, Any]) -> None:
    require_int(params, "n_prompts")
    require_int(params, "seed", minimum=0)
    min_pairs = params.get("min_pairs", 1)
    require_int({"min_pairs": min_pairs}, "min_pairs")
    if min_pairs > params["n_prompts"]:
        raise ConfigError("min_pairs", f"expected at most n_prompts={params['n_prompts']}, found {min_pairs}")
    check_options(templates=params.get("templates"), orders=params.get("orders", ORDERS),
                  corruption=params.get("corruption", "abc"), names=params.get("names"))
    _check_loss_positions(params)


PAIR_METRICS = ("pairs_kept", "pairs_dropped", "seq_len", "pad_fraction")


def _check_ioi_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Tokenize and align the prompts with the model's tokenizer before the model exists
    (a trained toy model's tokenizer is built in code), so too few aligned pairs stop the run
    before the model trains."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    records = generate_ioi(params["n_prompts"], params["seed"], templates=params.get("templates"),
                           orders=params.get("orders", ORDERS), corruption=params.get("corruption", "abc"),
                           names=params.get("names"), spaced_punctuation=params.get("spaced_punctuation", False))
    try:
        tokenize_pairs(model.tokenizer, records, prepend_bos=params.get("prepend_bos", True),
                       min_pairs=params.get("min_pairs", 1), key="min_pairs", max_len=model.n_ctx,
                       loss_positions=params.get("loss_positions", "end"))
    except ConfigError as error:
        if not error.key.startswith("min_pairs["):
            raise
        # A generated prompt the tokenizer cannot encode: what to change is the names or templates it came from.
        raise ConfigError("names" if params.get("names") else "templates", error.message) from None


@stage("ioi_prompts", outputs=("pairs",), preflight=_check_ioi_params, check_shapes=_check_ioi_shapes,
       metrics=PAIR_METRICS, summary=("pairs_kept", "pairs_dropped"))
def ioi_prompts(
    model: HookedTransformer,
    n_prompts: int,
    seed: int,
    templates: list[int] | None = None,
    orders: Sequence[str] = ORDERS,
    corruption: str = "abc",
    min_pairs: int = 1,
    names: list[str] | None = None,
    spaced_punctuation: bool = False,
    prepend_bos: bool = True,
    loss_positions: str = "end",
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """``n_prompts`` IOI prompt pairs from tasks/ioi_prompts.py's generator, tokenized and aligned.

    ``corruption``: "abc" (a third name at S2) or "s2_swap" (the IO name at S2). Pairs the
    model's tokenizer does not align (a name of several tokens, a prompt longer than
    n_ctx) are dropped; fewer than ``min_pairs`` left is an error. Logs ``pairs_kept`` and
    ``pairs_dropped``. The toy IOI model's tokenizer splits off "," and ".", so plain text
    suits it too; ``spaced_punctuation`` writes "shops ." for word tokenizers that do not.
    """
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    params = {"n_prompts": n_prompts, "seed": seed, "min_pairs": min_pairs, "templates": templates,
              "orders": orders, "corruption": corruption, "names": names, "loss_positions": loss_positions}
    _check_ioi_params(params)
    tokenizer = require_tokenizer(model, "n_prompts")
    records = generate_ioi(n_prompts, seed, templates=templates, orders=orders, corruption=corruption,
                           names=names, spaced_punctuation=spaced_punctuation)
    pairs, dropped = tokenize_pairs(tokenizer, records, prepend_bos=prepend_bos, min_pairs=min_pairs,
                                    key="min_pairs", max_len=model.cfg.n_ctx, loss_positions=loss_positions)
    _log(tracker, pairs, dropped)
    return _checked_pairs(model, pairs)


# ---------------------------------------------------------------- pairs written in YAML


def _check_pair_params(params: dict[str, Any]) -> None:
    check_string_records("pairs", params.get("pairs"), PAIR_FIELDS)
    _check_loss_positions(params)


def _check_pair_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Every pair aligned under the model's tokenizer, before the model is built or trained."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    tokenize_pairs(model.tokenizer, params["pairs"], prepend_bos=params.get("prepend_bos", True), min_pairs=1,
                   key="pairs", max_len=model.n_ctx, loss_positions=params.get("loss_positions", "end"))


@stage("prompt_pairs", outputs=("pairs",), preflight=_check_pair_params, check_shapes=_check_pair_shapes,
       metrics=PAIR_METRICS, summary=("pairs_kept", "seq_len"))
def prompt_pairs(
    model: HookedTransformer,
    pairs: list[dict[str, str]],
    prepend_bos: bool = True,
    loss_positions: str = "end",
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """Clean/corrupted prompt pairs written in YAML (``{clean, corrupted, answer, wrong}`` each):
    any task patched without code.

    Every pair must align: the same number of tokens in both prompts, and one token each
    for answer and wrong (with its leading space: " Mary"); otherwise the error names the
    pair, e.g. ``pairs[3].answer: expected a single token, found 2 tokens [' Ma', 'ry']``.
    ``loss_positions``: the positions the loss metric averages over, "end" (the answer)
    or "all" (every prompt token's next-token loss, the answer's at END).
    """
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    _check_pair_params({"pairs": pairs, "loss_positions": loss_positions})
    tokenizer = require_tokenizer(model, "pairs")
    tokenized, dropped = tokenize_pairs(tokenizer, pairs, prepend_bos=prepend_bos, min_pairs=1, key="pairs",
                                        max_len=model.cfg.n_ctx, loss_positions=loss_positions)
    _log(tracker, tokenized, dropped)
    return _checked_pairs(model, tokenized)


# ---------------------------------------------------------------- repeated-token pairs (patching)


def _check_repeated_pairs_params(params: dict[str, Any]) -> None:
    require_int(params, "n_pairs")
    require_int(params, "seed", minimum=0)


def _check_repeated_pairs_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    tokens = inputs.get("tokens")
    if tokens is not None and tokens.n_sequences is not None and params["n_pairs"] > tokens.n_sequences:
        raise ConfigError("n_pairs", f"expected at most the probe's {tokens.n_sequences} sequences, "
                                     f"found {params['n_pairs']}")


@stage("repeated_pairs", outputs=("pairs",), preflight=_check_repeated_pairs_params,
       check_shapes=_check_repeated_pairs_shapes, metrics=("n_pairs", "seq_len"))
def repeated_pairs(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    n_pairs: int,
    seed: int,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """Prompt pairs for patching induction: clean [BOS] r r (the first ``n_pairs`` rows of a
    repeated_tokens probe), corrupted [BOS] r' r with a fresh first half r'.

    The second half is the same in both, and only the clean run can predict it from
    the first: the ``loss`` metric reads the second half's predictions (``loss_mask``).
    For ``logit_diff`` the answer is the last token, the wrong answer the token at the
    same place in r'. The pairs dict is the one patching/prompt_pairs.py describes.
    """
    import torch

    _check_repeated_pairs_params({"n_pairs": n_pairs, "seed": seed})
    if tokens.shape[1] % 2 == 0:
        raise ConfigError("tokens", "expected a repeated_tokens probe with BOS ([BOS] r r, odd length), "
                                    f"found length {tokens.shape[1]}")
    if n_pairs > tokens.shape[0]:
        raise ConfigError("n_pairs", f"expected at most the probe's {tokens.shape[0]} sequences, found {n_pairs}")
    clean = tokens[:n_pairs].clone()
    n, width = clean.shape
    half = (width - 1) // 2
    candidates = plain_token_ids(model)
    # A stream of its own: seeded with ``seed`` alone it would redraw the probe's own first halves.
    stream = int.from_bytes(hashlib.sha256(f"repeated_pairs:{seed}".encode()).digest()[:8], "little")
    generator = torch.Generator().manual_seed(stream)
    corrupted = clean.clone()
    corrupted[:, 1:1 + half] = candidates[torch.randint(0, len(candidates), (n, half), generator=generator)]
    targets = torch.cat([clean[:, 1:], clean[:, -1:]], dim=1)
    loss_mask = torch.zeros(n, width, dtype=torch.bool)
    loss_mask[:, half + 1:width - 1] = True  # predictions of the second half's tokens 2.. (the first is not predictable)
    end = torch.full((n,), width - 2)
    tracker.log_metrics({"n_pairs": n, "seq_len": width})
    return {
        "clean": clean, "corrupted": corrupted, "answer": clean[:, -1].clone(), "wrong": corrupted[:, half].clone(),
        "end": end, "length": torch.full((n,), width), "targets": targets, "loss_mask": loss_mask,
    }
