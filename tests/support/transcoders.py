"""Random SAELens transcoders for a tiny HookedTransformer (the attribution tests), by layer."""

from __future__ import annotations

from typing import Any


def random_transcoders(model: Any, d_transcoder: int, *, skip: bool = False, seed: int = 0, scale: float = 0.3,
                       bias: float = -0.3, hook_in: str = "blocks.{layer}.ln2.hook_normalized",
                       hook_out: str = "blocks.{layer}.hook_mlp_out") -> Any:
    """ReLU transcoders (skip ones with ``skip``) with normal weights of std ``scale`` and encoder bias
    ``bias`` (so that some, not all, latents fire), one per layer of ``model``."""
    import sae_lens
    import torch
    from sae_lens.saes.sae import SAEMetadata

    from interp_pipeline.transcoders.storage import TranscoderSet

    generator = torch.Generator().manual_seed(seed)
    d_model = model.cfg.d_model
    cls, cfg_class = ((sae_lens.SkipTranscoder, sae_lens.SkipTranscoderConfig) if skip
                      else (sae_lens.Transcoder, sae_lens.TranscoderConfig))
    by_layer = {}
    for layer in range(model.cfg.n_layers):
        cfg = cfg_class(d_in=d_model, d_sae=d_transcoder, d_out=d_model, apply_b_dec_to_input=False,
                        metadata=SAEMetadata(hook_name=hook_in.format(layer=layer),
                                             hook_name_out=hook_out.format(layer=layer), hook_layer=layer))
        transcoder = cls(cfg)
        with torch.no_grad():
            for parameter in transcoder.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
            transcoder.b_enc.add_(bias)
        by_layer[layer] = transcoder.eval()
    return TranscoderSet(by_layer)
