"""Running a model to the hooks one wants: the forward pass shared by the activation cache and
SAE training streamed from the model.

Both run TransformerLens's ``run_with_cache`` with a names filter, stopped after the
deepest hook's block, and need each hook's per-token shape before the first batch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.common.tl_version import is_bridge, is_hooked_transformer

if TYPE_CHECKING:
    from torch import Tensor

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.")


def hook_row_shapes(model: Any, tokens: Tensor, hooks: list[str]) -> dict[str, list[int]]:
    """Each hook's per-token shape, from a 3-token forward; refuses hooks with no token axis.

    The probe stops where the caching does: the later blocks and the unembedding (a
    d_model x d_vocab matmul, most of a small probe's time) add nothing to the shapes.
    """
    import torch

    for hook in hooks:
        if hook not in model.hook_dict:
            raise ConfigError("hooks", f"expected a hook name of this model, found '{hook}'",
                              suggestion=did_you_mean(hook, model.hook_dict))
    probe = tokens[:1, :3].to(model.cfg.device)
    stop = stop_at_layer_for(model, hooks)
    with torch.inference_mode():
        _, cache = model.run_with_cache(probe, names_filter=hooks,
                                        **({"stop_at_layer": stop} if stop is not None else {}))
    shapes = {}
    for hook in hooks:
        shape = tuple(cache[hook].shape)
        if len(shape) < 3 or shape[1] != probe.shape[1]:
            raise ConfigError("hooks", f"expected a hook with one activation per token, found '{hook}' "
                                       f"of shape {shape} (attention patterns are per query and key)")
        shapes[hook] = list(shape[2:])
    return shapes


def stop_at_layer_for(model: Any, hooks: list[str]) -> int | None:
    """Run only the blocks the hooks need (``stop_at_layer``, which HookedTransformer and, since
    TransformerLens 3.9, TransformerBridge take).

    Hooks in the last block stop at n_layers too on a HookedTransformer: the forward then returns
    the residual stream without the final norm and the unembedding, which for GPT-2 small (d_vocab
    50,257) costs as much as about five blocks. A Bridge stopped at n_layers runs them anyway (its
    stop is an exception raised by the block at that index), so there it is None.
    """
    layers = [_BLOCK_HOOK.match(h) for h in hooks]
    if not all(layers):
        return None
    stop = max(int(m.group(1)) for m in layers) + 1
    if is_hooked_transformer(model):
        return stop
    if is_bridge(model):
        return stop if stop < len(model.blocks) else None
    return None


def hook_activations(model: Any, tokens: Tensor, hooks: list[str], stop_at_layer: int | None) -> dict[str, Tensor]:
    """One forward pass over ``tokens`` (on the model's device), returning each hook's activations."""
    import torch

    kwargs = {"stop_at_layer": stop_at_layer} if stop_at_layer is not None else {}
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hooks, **kwargs)
    return {hook: cache[hook] for hook in hooks}


def weights_fingerprint(model: Any) -> dict[str, Any]:
    """Which weights made a store, cheaply: per tensor its name, shape, dtype, the sum of its
    values' bit patterns and its first values.

    Hashing every byte of GPT-2 small takes seconds; a different model, checkpoint or
    fine-tune still changes the sums (the full checksum is on the model stage's run).
    The sums are of the values' bits read as integers (float32 as int32, ...), summed in int64:
    integer sums are exact, so they do not depend on how torch splits a reduction across threads
    or vector lanes. A float64 sum did (the same GPT-2-shaped model fingerprinted differently
    under 1 and 2 torch threads), so a store resumed under another thread count, or written in
    shards on machines with different core counts, was refused as another model's.
    """
    import hashlib

    import numpy as np
    import torch

    same_size_integer = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    digest = hashlib.sha256()
    n_values = 0  # parameters and buffers
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            n_values += flat.numel()
            head = flat[:64].float().cpu().numpy().tobytes()
            bits = flat.view(same_size_integer[flat.element_size()])
            # numpy's int64 accumulation on the CPU (no int64 copy: 19 ms for GPT-2's embedding,
            # against 165 ms for torch's); on a device, torch's. Both exact, so the same number.
            total = (int(np.add.reduce(bits.numpy(), dtype=np.int64)) if bits.device.type == "cpu"
                     else int(bits.sum(dtype=torch.int64).item()))
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{total}".encode())
            digest.update(head)
    return {"n_values": n_values, "weights_fingerprint": digest.hexdigest()[:16]}
