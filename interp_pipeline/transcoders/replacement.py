"""The local replacement model of one prompt (Ameisen et al. 2025, "Circuit Tracing", section 2).

Each MLP is replaced by its transcoder; attention patterns and LayerNorm scales are
frozen at their values in the model's own run; each (layer, position) gets an error
node holding what the transcoder missed there, so the replacement's forward pass gives
the model's logits exactly. With everything frozen, the residual stream is linear in
the sources (token embeddings, feature outputs a_s * W_dec[s], errors), which is what
makes direct effects well defined (interp_pipeline.transcoders.attribution).

As in circuit-tracer 0.5.0 (github.com/safety-research/circuit-tracer,
replacement_model_transformerlens.py, read and rewritten here), features at the first
position (BOS) are zeroed and its error node is zero: that position's MLP output stays
a constant, like the biases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from interp_pipeline.common.errors import ConfigError

ZERO_POSITIONS = slice(0, 1)


def scale_hooks(model: Any) -> list[str]:
    """Every LayerNorm scale hook of the model (ln1, ln2 per block, ln_final)."""
    return [name for name in model.hook_dict if name.endswith("hook_scale")]


def pattern_hooks(model: Any) -> list[str]:
    return [name for name in model.hook_dict if name.endswith("attn.hook_pattern")]


def check_transcoders(model: Any, transcoders: Any) -> None:
    """A transcoder for every layer, reading and writing hooks the model has, at its width."""
    layers = list(range(model.cfg.n_layers))
    if sorted(transcoders.layers) != layers:
        raise ConfigError("transcoder.layers", f"expected a transcoder for every layer {layers} of the model, "
                                               f"found layers {transcoders.layers}", absolute=True)
    for layer in layers:
        tc = transcoders[layer]
        for hook in (transcoders.hook_in(layer), transcoders.hook_out(layer)):
            if hook not in model.hook_dict:
                raise ConfigError("transcoder.hook_in", f"expected a hook of the model, found {hook}", absolute=True)
        if int(tc.cfg.d_in) != model.cfg.d_model or int(tc.cfg.d_out) != model.cfg.d_model:
            raise ConfigError("transcoder.d_in", f"expected transcoders of width d_model={model.cfg.d_model}, found "
                                                 f"d_in={tc.cfg.d_in}, d_out={tc.cfg.d_out} at layer {layer}",
                              absolute=True)


def skip_of(transcoder: Any, x: torch.Tensor) -> torch.Tensor:
    """The skip connection's output W_skip x (zeros, still connected to x, without one)."""
    weight = getattr(transcoder, "W_skip", None)
    return x @ weight.T.to(x.dtype) if weight is not None else x * 0


@dataclass
class PromptRun:
    """The model's run on one prompt, and the transcoders' view of it (all [pos, ...], no batch)."""

    tokens: torch.Tensor  # [pos]
    logits: torch.Tensor  # [pos, d_vocab]
    frozen: dict[str, torch.Tensor]  # attention patterns and LayerNorm scales, by hook name
    mlp_in: torch.Tensor  # [layer, pos, d_model]
    mlp_out: torch.Tensor  # [layer, pos, d_model]
    activations: torch.Tensor  # [layer, pos, d_transcoder], BOS zeroed
    errors: torch.Tensor  # [layer, pos, d_model]: MLP output - transcoder output; BOS zero


@torch.no_grad()
def run_prompt(model: Any, transcoders: Any, tokens: torch.Tensor) -> PromptRun:
    n_layers = model.cfg.n_layers
    keep = set(scale_hooks(model) + pattern_hooks(model))
    keep |= {transcoders.hook_in(layer) for layer in range(n_layers)}
    keep |= {transcoders.hook_out(layer) for layer in range(n_layers)}
    logits, cache = model.run_with_cache(tokens[None], names_filter=lambda name: name in keep)
    mlp_in = torch.stack([cache[transcoders.hook_in(layer)][0] for layer in range(n_layers)])
    mlp_out = torch.stack([cache[transcoders.hook_out(layer)][0] for layer in range(n_layers)])
    activations, errors = [], []
    for layer in range(n_layers):
        tc = transcoders[layer]
        acts = tc.encode(mlp_in[layer])
        acts[ZERO_POSITIONS] = 0
        reconstruction = acts @ tc.W_dec + tc.b_dec + skip_of(tc, mlp_in[layer])
        error = mlp_out[layer] - reconstruction
        error[ZERO_POSITIONS] = 0
        activations.append(acts)
        errors.append(error)
    frozen = {name: cache[name] for name in keep if name.endswith(("hook_scale", "hook_pattern"))}
    return PromptRun(tokens, logits[0], frozen, mlp_in, mlp_out, torch.stack(activations), torch.stack(errors))


@torch.no_grad()
def replacement_logits(model: Any, transcoders: Any, run: PromptRun,
                       feature_deltas: Mapping[tuple[int, int, int], float] | None = None,
                       *, direct_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [pos, d_vocab], MLP inputs [layer, pos, d_model]) of the frozen replacement model.

    Each MLP's output is its transcoder's output on the live MLP input, plus the error
    node (BOS keeps the model's MLP output). ``feature_deltas`` {(layer, pos, feature):
    delta} adds delta * W_dec[feature] at that place. ``direct_only``: every MLP output
    is instead the model's own, frozen, plus the deltas and the skip connections' change
    (what circuit-tracer's gradients flow through): a delta's effect on a later MLP input
    is then its direct effect, the edge weight.
    """
    n_layers = model.cfg.n_layers
    live_in: dict[int, torch.Tensor] = {}
    deltas = feature_deltas or {}

    def freeze(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return run.frozen[hook.name].expand_as(act)

    def read_in(act: torch.Tensor, hook: Any, layer: int) -> None:
        live_in[layer] = act[0]

    def write_out(act: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        tc, x = transcoders[layer], live_in[layer]
        if direct_only:
            out = run.mlp_out[layer] + skip_of(tc, x) - skip_of(tc, run.mlp_in[layer])
        else:
            acts = tc.encode(x)
            acts[ZERO_POSITIONS] = 0
            out = acts @ tc.W_dec + tc.b_dec + skip_of(tc, x) + run.errors[layer]
            out[ZERO_POSITIONS] = run.mlp_out[layer][ZERO_POSITIONS] + skip_of(tc, x)[ZERO_POSITIONS] \
                - skip_of(tc, run.mlp_in[layer])[ZERO_POSITIONS]
        for (dl, pos, feature), delta in deltas.items():
            if dl == layer:
                out[pos] = out[pos] + delta * tc.W_dec[feature]
        return out[None].to(act.dtype)

    hooks = [(name, freeze) for name in run.frozen]
    for layer in range(n_layers):
        hooks.append((transcoders.hook_in(layer), lambda a, hook, layer=layer: read_in(a, hook, layer)))
        hooks.append((transcoders.hook_out(layer), lambda a, hook, layer=layer: write_out(a, hook, layer)))
    logits = model.run_with_hooks(run.tokens[None], fwd_hooks=hooks)
    return logits[0], torch.stack([live_in[layer] for layer in range(n_layers)])
