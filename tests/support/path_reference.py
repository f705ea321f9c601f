"""Path patching by hand: Wang et al.'s two runs per sender head, each a plain full ``run_with_hooks``,
one sender at a time; what patching/path.py's batched, start-at-the-layer engine is checked against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def path_patch_by_hand(model: Any, pairs: Mapping[str, Any], receivers: Sequence[tuple[int, int]],
                       receiver_input: str) -> Any:
    """The mean logit difference for each sender head [layer, head] through ``receivers``' ``receiver_input``
    (q, k or v; a receiver's head indexes that hook's head axis, whatever its width)."""
    import torch

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    input_names = {layer: f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers}
    with torch.inference_mode():
        _, clean = model.run_with_cache(pairs["clean"], names_filter=lambda name: name in z_names)
        _, corrupted = model.run_with_cache(pairs["corrupted"], names_filter=lambda name: name in z_names)
    rows = torch.arange(pairs["clean"].shape[0])

    def logit_diff(logits: Any) -> float:
        end = logits[rows, pairs["end"]]  # [batch, d_vocab]
        return float((end[rows, pairs["answer"]] - end[rows, pairs["wrong"]]).mean())

    # Hooks keyed by the name asked for (a Bridge's hook.name may be its own alias).
    def freeze(name: str, layer: int, head: int) -> Any:
        def hook(z: Any, hook: Any) -> Any:
            z = corrupted[name].clone()
            if name == z_names[layer]:
                z[:, :, head] = clean[name][:, :, head]
            return z

        return hook

    def capture(name: str, into: dict) -> Any:
        def hook(activation: Any, hook: Any) -> Any:
            into[name] = activation.clone()
            return activation

        return hook

    def replace(name: str, layer: int, captured: dict) -> Any:
        def hook(activation: Any, hook: Any) -> Any:
            for r_layer, head in receivers:
                if r_layer == layer:
                    activation[:, :, head] = captured[name][:, :, head]
            return activation

        return hook

    result = torch.zeros(n_layers, n_heads)
    with torch.inference_mode():
        for layer in range(n_layers):
            for head in range(n_heads):
                captured: dict = {}
                model.run_with_hooks(pairs["corrupted"], fwd_hooks=[
                    *((name, freeze(name, layer, head)) for name in z_names),
                    *((name, capture(name, captured)) for name in input_names.values())])
                logits = model.run_with_hooks(pairs["corrupted"], fwd_hooks=[
                    (name, replace(name, r_layer, captured)) for r_layer, name in input_names.items()])
                result[layer, head] = logit_diff(logits)
    return result
