"""Token datasets built in code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@stage("random_tokens", outputs=("tokens",), version=2)
def random_tokens(
    model: Any, n_sequences: int, seq_len: int, seed: int, d_vocab: int | None = None
) -> Int[Tensor, "batch pos"]:
    """Uniform random token ids below ``d_vocab`` (default: the model's vocabulary size),
    from a generator of their own (no global RNG state touched)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    high = d_vocab if d_vocab is not None else model.cfg.d_vocab
    return torch.randint(0, high, (n_sequences, seq_len), generator=generator)
