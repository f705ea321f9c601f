"""Token datasets built in code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_pipeline.pipeline.registry import stage

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@stage("random_tokens", outputs=("tokens",))
def random_tokens(n_sequences: int, seq_len: int, d_vocab: int, seed: int) -> Int[Tensor, "batch pos"]:
    """Uniform random token ids, from a generator of their own (no global RNG state touched)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, d_vocab, (n_sequences, seq_len), generator=generator)
