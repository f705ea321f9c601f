"""An MLP's output weights in TransformerLens's layout (out = k @ W, [d_mlp, d_model]) on both model kinds.

A HookedTransformer holds them as ``blocks[L].mlp.W_out``. A TransformerBridge keeps the Hugging Face
module's own: ``blocks[L].mlp.out`` wraps GPT-2's ``c_proj``, a ``Conv1D`` whose weight is already
[d_mlp, d_model] (out = x @ W + b), or for other architectures an ``nn.Linear`` ([d_model, d_mlp],
out = x @ W^T + b), read and written transposed. The keys (``blocks.L.mlp.hook_post``) and outputs
(``hook_mlp_out``) are the same hook names on both, so ROME and MEMIT need only this mapping.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.tl_version import is_hooked_transformer


def _bridge_out_module(model: Any, layer: int) -> torch.nn.Module:
    mlp = model.blocks[layer].mlp
    out = getattr(mlp, "out", None)
    module = getattr(out, "_original_component", out)
    if module is None or not hasattr(module, "weight"):
        raise ConfigError("inputs.model", f"expected block {layer}'s MLP to have an output projection (blocks.{layer}"
                                          f".mlp.out: Conv1D or Linear), found {type(mlp).__name__} without one")
    return module


def mlp_out_weight(model: Any, layer: int) -> torch.Tensor:
    """Block ``layer``'s W_out as [d_mlp, d_model] (a view where the layout allows, else a transposed one)."""
    if is_hooked_transformer(model):
        return model.blocks[layer].mlp.W_out
    module = _bridge_out_module(model, layer)
    return module.weight.T if isinstance(module, torch.nn.Linear) else module.weight


def set_mlp_out_weight(model: Any, layer: int, weight: torch.Tensor) -> None:
    """Write ``weight`` ([d_mlp, d_model]) into block ``layer``'s output projection, in place."""
    target = mlp_out_weight(model, layer)
    if target.shape != weight.shape:
        raise ValueError(f"expected W_out of shape {tuple(target.shape)}, found {tuple(weight.shape)}")
    with torch.no_grad():
        target.copy_(weight.to(device=target.device, dtype=target.dtype))


def model_copy(model: Any) -> Any:
    """An independent copy to edit. A HookedTransformer deep-copies; a TransformerBridge does not (its joint
    QKV attention keeps non-leaf tensors that ``copy.deepcopy`` refuses), so it is loaded again from its
    own checkpoint (``original_model.config._name_or_path``: a directory, or a hub id served from the
    local cache) and given the original's current parameters."""
    from interp_pipeline.models.from_config import copy_of, is_native_bridge

    if is_hooked_transformer(model):
        return copy.deepcopy(model)
    if is_native_bridge(model):  # TransformerLens 4's config-built model: no checkpoint to load again
        return copy_of(model)
    from interp_pipeline.models import hub

    source = model.original_model.config._name_or_path
    dtype = str(next(model.original_model.parameters()).dtype).removeprefix("torch.")
    fresh = hub.load_hugging_face(source, revision=None, device=str(model.cfg.device), dtype=dtype)
    fresh.original_model.load_state_dict(model.original_model.state_dict())
    return fresh
