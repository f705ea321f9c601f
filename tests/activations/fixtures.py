"""A tiny model and token set shared by the activation-cache tests and their subprocesses."""

from __future__ import annotations

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"]
CACHE_PARAMS = dict(hooks=HOOKS, batch_size=4, chunk_rows=24)


def tiny_model_and_tokens(n_sequences: int = 30, seq_len: int = 12, d_model: int = 16):
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_heads=2, d_head=d_model // 2, d_mlp=2 * d_model,
                                  n_ctx=32,
                                  d_vocab=50, act_fn="relu", seed=0)
    model = HookedTransformer(cfg)
    model.eval()
    tokens = torch.randint(1, 50, (n_sequences, seq_len), generator=torch.Generator().manual_seed(0))
    return model, tokens
