"""What a model's tokenizer and vocabulary allow: token tensors, BOS, context length.

Shared by everything that builds token datasets or prompt pairs for a model
(interp_pipeline.models.random_tokens, .text.token_datasets, .patching.pair_datasets). BOS is the
tokenizer's ``bos_token_id`` (TransformerLens sets it to EOS when a tokenizer has
none); a model built from a config has no tokenizer, and there BOS is token 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def check_fits_context(model: HookedTransformer, length: int, key: str) -> None:
    if length > model.cfg.n_ctx:
        raise ConfigError(key, f"expected sequences of at most n_ctx={model.cfg.n_ctx} tokens, found {length}")


def require_tokenizer(model: HookedTransformer, key: str) -> Any:
    if model.tokenizer is None:
        raise ConfigError(key, "tokenizing text needs the model's tokenizer, and this model has none "
                               "(a model built from a config has none; load a pretrained one)")
    return model.tokenizer


def bos_id(model: HookedTransformer) -> int:
    tokenizer = model.tokenizer
    if tokenizer is None:
        return 0
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ConfigError("prepend_bos", "the model's tokenizer has no BOS (nor EOS) token; set prepend_bos: false")
    return bos


def as_tokens(rows: Any, model: HookedTransformer) -> Int[Tensor, "batch pos"]:
    """``rows`` as an int64 CPU tensor, every id inside the model's vocabulary."""
    import torch

    tokens = torch.as_tensor(rows, dtype=torch.int64).cpu()
    # A tokenizer larger than the embedding would only fail later, as an index error deep in the model.
    if tokens.numel() and int(tokens.max()) >= model.cfg.d_vocab:
        raise ValueError(f"token id {int(tokens.max())} is outside the model's vocabulary "
                         f"(d_vocab={model.cfg.d_vocab}): tokenizer and model do not match")
    return tokens


def plain_token_ids(model: HookedTransformer) -> Tensor:
    """Sorted ids the model can embed that are not special tokens (sorted: same draws for the same seed)."""
    import torch

    d_vocab = model.cfg.d_vocab
    tokenizer = model.tokenizer
    if tokenizer is None:
        ids = list(range(1, d_vocab))
    else:
        special = set(tokenizer.all_special_ids)
        ids = sorted(i for i in set(tokenizer.get_vocab().values()) if i < d_vocab and i not in special)
    if not ids:
        raise ValueError(f"the vocabulary (d_vocab={d_vocab}) has no non-special token to draw")
    return torch.tensor(ids, dtype=torch.int64)
