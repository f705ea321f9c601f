"""A plain TransformerLens causal-tracing loop: one forward per restoration, the reference the
fast engine (interp_pipeline/tracing/engine.py) is checked against and benchmarked with."""

from __future__ import annotations

from typing import Any


def reference_trace(model: Any, facts: dict, prompt: int, *, noise_std: float, samples: int, window: int,
                    seed: int, kinds=("hidden", "mlp", "attn")) -> tuple[dict, float, float]:
    """``({kind: [n_layers, length]}, clean p, corrupted p)`` for one prompt, by ``run_with_hooks``
    per (kind, layer, position), as the paper's ``trace_with_patch`` does it."""
    import torch

    from interp_pipeline.tracing.engine import RESTORED_HOOK, noise_for, window_layers

    length = int(facts["length"][prompt])
    tokens = facts["tokens"][prompt:prompt + 1, :length]
    first, last_subject = int(facts["subject_first"][prompt]), int(facts["subject_last"][prompt])
    target, last = int(facts["object"][prompt]), length - 1
    noise = noise_for(prompt, seed, samples, last_subject - first + 1, model.cfg.d_model) * noise_std
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.{RESTORED_HOOK[kind]}" for kind in kinds for layer in range(n_layers)]
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
        clean_p = float(logits[0, last].softmax(-1)[target])

        def add_noise(embed, hook):
            embed = embed.clone()
            embed[:, first:last_subject + 1] += noise.to(embed)  # the model's dtype and device
            return embed

        def p_object(hooks):
            out = model.run_with_hooks(tokens.repeat(samples, 1), fwd_hooks=[("hook_embed", add_noise), *hooks])
            return float(out[:, last].softmax(-1)[:, target].mean())

        corrupted_p = p_object([])
        scores = {kind: torch.zeros(n_layers, length) for kind in kinds}
        for kind in kinds:
            for layer in range(n_layers):
                layers = [layer] if kind == "hidden" else window_layers(layer, window, n_layers)
                for position in range(length):
                    def restorer(name, position=position):
                        def restore(activation, hook):
                            activation[:, position] = cache[name][0, position]
                            return activation

                        return restore

                    hooks = [(name, restorer(name)) for name in
                             (f"blocks.{l}.{RESTORED_HOOK[kind]}" for l in layers)]
                    scores[kind][layer, position] = p_object(hooks)
    return scores, clean_p, corrupted_p
