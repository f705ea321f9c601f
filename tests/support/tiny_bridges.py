"""Tiny checkpoints of each architecture the TransformerBridge fast path knows (models/bridge_blocks.py),
saved with save_pretrained beside tests/support/tiny_gpt2.py's word-level tokenizer: GPT-2 (learned
positions, LayerNorm), GPT-NeoX/Pythia (rotary on part of each head, parallel attention and MLP,
LayerNorm), Llama (rotary, RMSNorm, grouped-query attention) and Gemma 3 (sliding-window and global
layers with their own rotary bases, QK norms, final logit softcapping).

The weights are drawn wider than the configs' defaults (``initializer_range``), so a wrong rotary
angle or mask moves the logits by far more than the tests' 1e-5."""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_gpt2 import D_MODEL, N_LAYERS, VOCAB, _tokenizer, save_tiny_gpt2

ARCHITECTURES = ("gpt2", "neox", "llama", "gemma3")
_COMMON = dict(vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=2 * D_MODEL, num_hidden_layers=N_LAYERS,
               num_attention_heads=4, max_position_embeddings=64, bos_token_id=1, eos_token_id=1,
               initializer_range=0.1)


def _model(architecture: str):
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                              LlamaForCausalLM)

    if architecture == "neox":  # Pythia's layout: half of each head rotated, parallel residual
        return GPTNeoXForCausalLM(GPTNeoXConfig(**_COMMON, rotary_pct=0.5, use_parallel_residual=True))
    if architecture == "llama":
        return LlamaForCausalLM(LlamaConfig(**_COMMON, num_key_value_heads=2))
    if architecture == "gemma3":
        # Layer 0 slides over 3 tokens (the tests' prompts are longer), layer 1 is global; the softcap is
        # tight enough to bend these logits. No padding row (see interp_pipeline/rehearsal/gemma3.py).
        return Gemma3ForCausalLM(Gemma3TextConfig(**_COMMON, num_key_value_heads=1, head_dim=8, sliding_window=3,
                                                  layer_types=["sliding_attention", "full_attention"],
                                                  query_pre_attn_scalar=8, final_logit_softcapping=2.0,
                                                  pad_token_id=None))
    raise ValueError(f"no tiny {architecture}: expected one of {ARCHITECTURES}")


def save_tiny(architecture: str, directory: Path) -> Path:
    """Write a seeded 2-layer model of ``architecture`` (one of ARCHITECTURES) and the tokenizer to ``directory``."""
    import torch

    if architecture == "gpt2":
        return save_tiny_gpt2(directory)
    torch.manual_seed(0)
    _model(architecture).save_pretrained(directory)
    _tokenizer().save_pretrained(directory)
    return directory
