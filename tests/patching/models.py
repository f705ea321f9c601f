"""Tiny random models and prompt pairs for the patching tests."""

from __future__ import annotations

from typing import Any


def tiny_model(*, n_layers: int = 2, n_heads: int = 4, attn_only: bool = False, normalization_type: str | None = "LN",
               d_vocab: int = 50, seed: int = 0, **extra: Any) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=8 * n_heads, n_heads=n_heads, d_head=8, d_mlp=None if attn_only else 64,
        d_vocab=d_vocab, n_ctx=24, act_fn="gelu", attn_only=attn_only, normalization_type=normalization_type,
        seed=seed, **extra,
    )
    model = HookedTransformer(cfg)
    model.eval()
    return model


def random_pairs(n_prompts: int, n_pos: int, *, differing: tuple[int, ...] = (2, 4), d_vocab: int = 50,
                 seed: int = 0) -> dict[str, Any]:
    """Clean and corrupted prompts differing at ``differing``; END varies per prompt."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (n_prompts, n_pos), generator=generator)
    corrupted = clean.clone()
    corrupted[:, list(differing)] = torch.randint(0, d_vocab, (n_prompts, len(differing)), generator=generator)
    end = n_pos - 1 - torch.arange(n_prompts) % 2  # some prompts end one token early (right padding)
    loss_mask = torch.zeros(n_prompts, n_pos, dtype=torch.bool)
    loss_mask[:, n_pos // 2:] = True
    return {
        "clean": clean, "corrupted": corrupted,
        "answer": torch.randint(0, d_vocab, (n_prompts,), generator=generator),
        "wrong": torch.randint(0, d_vocab, (n_prompts,), generator=generator),
        "end": end, "length": end + 1,
        "targets": torch.randint(0, d_vocab, (n_prompts, n_pos), generator=generator), "loss_mask": loss_mask,
    }
