"""The MLP keys' second moment, C = E[k k^T], per layer: the statistics ROME and MEMIT weigh their updates by.

As the paper's ``layer_stats`` (kmeng01/rome, rome/layer_stats.py, with util/runningstats.py's
SecondMoment) accumulates it: uncentred (no mean is subtracted), summed over every token the mask keeps
(padding left out) and divided by the number of those tokens, so C is a per-token mean and MEMIT's
``mom2_update_weight`` says how many tokens' worth of stored keys one edit is weighed against. All
requested layers are read in one pass over the tokens (one forward per batch, stopped after the last
layer needed), accumulated in float64: memory is one d_mlp x d_mlp matrix per layer.

The ``key_covariance`` stage's output is shared through the stage cache: rome_edit and memit_edit
given the same model, tokens and layers read the same entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from interp_pipeline.editing.prompts import mlp_key_hook

if TYPE_CHECKING:
    from interp_pipeline.editing.config import KeyCovarianceConfig
    from interp_pipeline.tracking.base import Tracker


def key_covariances(model: Any, layers: Sequence[int], tokens: torch.Tensor, *, batch_size_prompts: int,
                    mask: torch.Tensor | None = None) -> tuple[dict[int, torch.Tensor], int]:
    """{layer: C} over the tokens ``mask`` keeps (default: all), and how many tokens that is."""
    hooks = {mlp_key_hook(layer): layer for layer in layers}
    d_mlp = model.cfg.d_mlp
    totals = {layer: torch.zeros(d_mlp, d_mlp, dtype=torch.float64) for layer in layers}
    count = 0
    for start in range(0, tokens.shape[0], batch_size_prompts):
        batch = tokens[start:start + batch_size_prompts]
        with torch.no_grad():
            _, cache = model.run_with_cache(batch.to(model.cfg.device), names_filter=list(hooks),
                                            stop_at_layer=max(layers) + 1)
        keep = mask[start:start + batch_size_prompts] if mask is not None else torch.ones(batch.shape, dtype=torch.bool)
        for hook, layer in hooks.items():
            keys = cache[hook][keep.to(cache[hook].device)].double().cpu()
            totals[layer] += keys.T @ keys
        count += int(keep.sum())
    return {layer: total / max(count, 1) for layer, total in totals.items()}, count


def covariance_name(layer: int) -> str:
    """The key of layer ``layer``'s C in the stage's output."""
    return mlp_key_hook(layer)


def layer_stats(model: Any, tokens: torch.Tensor, settings: KeyCovarianceConfig, tracker: Tracker) -> dict[str, Any]:
    """The key_covariance stage's work: C for ``settings.layers`` (None: every layer) over ``tokens``,
    padding (the tokenizer's pad id) left out. Keys: ``blocks.L.mlp.hook_post``, and ``n_tokens``."""
    layers = list(range(model.cfg.n_layers)) if settings.layers is None else sorted(set(settings.layers))
    pad = model.tokenizer.pad_token_id if getattr(model, "tokenizer", None) is not None else None
    mask = tokens != pad if pad is not None else None
    covariances, count = key_covariances(model, layers, tokens, batch_size_prompts=settings.batch_size_prompts,
                                         mask=mask)
    tracker.log_metrics({"covariance_tokens": count, "n_layers": len(layers)})
    return {**{covariance_name(layer): c for layer, c in covariances.items()},
            "n_tokens": torch.tensor(count, dtype=torch.int64)}


def covariance_of(covariance: Any, layer: int, ridge: float) -> torch.Tensor:
    """Layer ``layer``'s C from a key_covariance output, plus ``ridge`` x its mean eigenvalue on the diagonal
    (a toy's keys may not span every direction)."""
    from interp_pipeline.common.errors import ConfigError

    name = covariance_name(layer)
    if name not in covariance:
        have = sorted(int(k.split(".")[1]) for k in covariance if k.startswith("blocks."))
        raise ConfigError("covariance.layers", f"expected the key covariance of layer {layer}, found layers {have}",
                          suggestion="add it to covariance.layers (or leave that unset: every layer)", absolute=True)
    c = torch.as_tensor(covariance[name]).double()
    return c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
