"""Tiny checkpoints of each architecture the TransformerBridge fast path knows (models/bridge_blocks.py),
saved with save_pretrained beside tests/support/tiny_gpt2.py's word-level tokenizer: GPT-2 (learned
positions, LayerNorm), GPT-NeoX/Pythia (rotary on part of each head, parallel attention and MLP,
LayerNorm), Llama (rotary, RMSNorm, grouped-query attention), Gemma 3 (sliding-window and global
layers with their own rotary bases, QK norms, final logit softcapping) and, in WINDOWED_ROTARY, Qwen2,
Qwen3 and Mistral (Llama's layers with sliding-window masks).

The weights are drawn wider than the configs' defaults (``initializer_range``), so a wrong rotary
angle or mask moves the logits by far more than the tests' 1e-5."""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_gpt2 import D_MODEL, N_LAYERS, VOCAB, _tokenizer, save_tiny_gpt2

ARCHITECTURES = ("gpt2", "neox", "llama", "gemma3")
# Llama's decoder layer with masks per attention type (each with a 3-token window somewhere): run by the
# Bridge tests of patching and tracing, not (yet) by every test of ARCHITECTURES.
WINDOWED_ROTARY = ("qwen2", "qwen3", "mistral")
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
    if architecture in WINDOWED_ROTARY:
        return _windowed_rotary(architecture)
    raise ValueError(f"no tiny {architecture}: expected one of {ARCHITECTURES + WINDOWED_ROTARY}")


def _windowed_rotary(architecture: str):
    """Qwen2 (biased q/k/v) and Qwen3 (QK norms): layer 0 global, layer 1 sliding over 3 tokens
    (``max_window_layers`` 1); Mistral: every layer sliding over 3 tokens."""
    from transformers import (MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                              Qwen3ForCausalLM)

    if architecture == "mistral":
        return MistralForCausalLM(MistralConfig(**_COMMON, num_key_value_heads=2, sliding_window=3))
    window = dict(num_key_value_heads=2, use_sliding_window=True, sliding_window=3, max_window_layers=1)
    if architecture == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**_COMMON, **window))
    return Qwen3ForCausalLM(Qwen3Config(**_COMMON, **window, head_dim=8))


def save_tiny(architecture: str, directory: Path) -> Path:
    """Write a seeded 2-layer model of ``architecture`` (one of ARCHITECTURES or WINDOWED_ROTARY) and the tokenizer
    to ``directory``."""
    import torch

    if architecture == "gpt2":
        return save_tiny_gpt2(directory)
    torch.manual_seed(0)
    _model(architecture).save_pretrained(directory)
    _tokenizer().save_pretrained(directory)
    return directory
