"""Prompt batches for editing (the subject's last token and the prediction's position), and the MLP key hook:
what ROME, MEMIT, their targets and key statistics all read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Prompts:
    """Right-padded prompts: ``tokens`` [n, seq], the subject's last token ``subject_last`` [n], and the
    position whose next-token prediction is the object, ``last`` [n] (the prompt's final token)."""

    tokens: torch.Tensor
    subject_last: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]], subject_last: Sequence[int], pad: int = 0) -> Prompts:
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad, dtype=torch.int64)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.as_tensor(list(row))
        return cls(tokens, torch.as_tensor(list(subject_last)), torch.as_tensor([len(r) - 1 for r in rows]))

    def __len__(self) -> int:
        return self.tokens.shape[0]


def mlp_key_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"
