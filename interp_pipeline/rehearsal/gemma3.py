"""Gemma 3 270M and Gemma Scope 2's transcoders for the rehearsal (conf/attribution_setup/gemma3_270m.yaml).

``hub/models--google--gemma-3-270m``: a Gemma3ForCausalLM of random weights with Gemma 3 270M's
layers (18, the real local/global pattern), heads (4 query, 1 key-value, d_head 256) and d_model
(640, which the transcoders need), but MLPs of 256 (2048 in the model: the transcoders replace them,
so their width is free) and GPT-2's tokenizer and vocabulary (50,257, not Gemma's 262,144: there is
no Gemma tokenizer offline). ~65M parameters instead of 268M.

The transcoders cannot come through SAELens's registry offline: its gemma_3 loader reads each
params.safetensors' shapes with HTTP range requests (get_safetensors_tensor_shapes), which no cache
serves. So they are written where load_transcoders' disk path reads them (``transcoders/layer_L``,
SAELens's own format, as SAELens would return them: JumpReLU skip transcoders labelled
blocks.L.hook_mlp_in -> blocks.L.hook_mlp_out), 256 latents each (16k in the release).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_REPO = "google/gemma-3-270m"
N_LAYERS, D_MODEL, D_MLP, D_TRANSCODER = 18, 640, 256, 256
# Gemma 3 270M's attention: every sixth layer global, the rest sliding windows of 512.
LAYER_TYPES = ["full_attention" if (layer + 1) % 6 == 0 else "sliding_attention" for layer in range(N_LAYERS)]
FIRING = 0.05  # each random latent fires on ~5% of the model's own MLP inputs


def gemma_files(directory: Path, tokenizer: Any, seed: int, ids: Any) -> tuple[dict[str, Any], Any]:
    """Write the model and tokenizer; return its shape and every layer's MLP input on ``ids`` [layer, rows, d]."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    bos = tokenizer.bos_token_id
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=D_MODEL, intermediate_size=D_MLP,
                              num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                              max_position_embeddings=1024, sliding_window=512, layer_types=LAYER_TYPES,
                              query_pre_attn_scalar=256, bos_token_id=bos, eos_token_id=bos,
                              # No padding row: HF zeroes the padding token's embedding, and a zero residual
                              # (BOS, were it the padding token) makes every norm's gradient ~1/sqrt(eps):
                              # x1e6 per layer, NaN by the middle of the model.
                              pad_token_id=None)
    model = Gemma3ForCausalLM(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    seen: dict[int, Any] = {}
    handles = [block.mlp.register_forward_pre_hook(lambda module, args, layer=layer: seen.__setitem__(layer, args[0]))
               for layer, block in enumerate(model.model.layers)]
    with torch.no_grad():
        model(ids)
    for handle in handles:
        handle.remove()
    mlp_in = torch.stack([seen[layer][:, 1:].reshape(-1, D_MODEL) for layer in range(N_LAYERS)])
    return {"d_model": D_MODEL, "n_layers": N_LAYERS, "d_mlp": D_MLP, "d_vocab": len(tokenizer)}, mlp_in


def transcoder_files(directory: Path, mlp_in: Any, seed: int) -> dict[str, Any]:
    """One random JumpReLU skip transcoder per layer in ``directory/layer_L``, thresholds set on the
    model's own MLP inputs so each latent fires on ~FIRING of them (live features, as trained ones)."""
    import torch
    from sae_lens import JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    for layer in range(N_LAYERS):
        cfg = JumpReLUSkipTranscoderConfig(
            d_in=D_MODEL, d_sae=D_TRANSCODER, d_out=D_MODEL, dtype="float32", device="cpu", apply_b_dec_to_input=False,
            metadata=SAEMetadata(hook_name=f"blocks.{layer}.hook_mlp_in", hook_name_out=f"blocks.{layer}.hook_mlp_out",
                                 model_name=MODEL_REPO, prepend_bos=True, context_size=1024))
        transcoder = JumpReLUSkipTranscoder(cfg)
        with torch.no_grad():
            transcoder.W_enc.normal_()
            transcoder.W_enc.div_(transcoder.W_enc.norm(dim=0, keepdim=True))
            transcoder.W_dec.normal_(0, 0.02)
            transcoder.W_skip.normal_(0, 0.02)
            transcoder.b_enc.zero_()
            transcoder.b_dec.zero_()
            pre = mlp_in[layer] @ transcoder.W_enc
            transcoder.threshold.copy_(torch.quantile(pre, 1 - FIRING, dim=0).clamp(min=1e-3))
        transcoder.save_model(directory / f"layer_{layer}")
    return {"d_in": D_MODEL, "d_transcoder": D_TRANSCODER, "layers": N_LAYERS, "firing": FIRING}
