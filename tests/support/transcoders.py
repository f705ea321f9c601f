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


def direct_effects_of(model: Any, transcoders: Any, run: Any, graph: Any, source: int, base: Any) -> tuple[Any, Any]:
    """Move feature ``source`` by its activation on the frozen replacement model (direct paths only):
    (the logits [pos, d_vocab], each active feature's pre-activation change [n_features]), which an
    exact graph's edges out of ``source`` equal. ``base``: the MLP inputs of the unmoved run."""
    import torch

    from interp_pipeline.transcoders.replacement import replacement_logits

    layer, pos, feature = graph.active_features[source].tolist()
    delta = {(layer, pos, feature): float(graph.activation_values[source])}
    logits, inputs = replacement_logits(model, transcoders, run, delta, direct_only=True)
    layers, positions, features = graph.active_features.T
    encoders = torch.stack([transcoders[t_layer].W_enc[:, t_feature]
                            for t_layer, t_feature in zip(layers.tolist(), features.tolist())])
    return logits, ((inputs[layers, positions] - base[layers, positions]) * encoders).sum(-1).detach()
