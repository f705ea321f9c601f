"""The corrupted run's keys and values, lent to restored runs for the positions before the restored one.

A restoration at position p (any kind, any layer) changes nothing before p: attention is causal, so
at every layer those positions hold the corrupted run's states, and their keys and values are the
corrupted run's. A restored run therefore needs to compute positions p.. only, attending to the
corrupted run's keys and values for 0..p-1, which is what a KV cache is for. We let the library fill
the cache during the corrupted run (its own layout: before rotary on a HookedTransformer, after it on
HF attention) and hand each restored run a copy cut at p:

- HookedTransformer: TransformerLens's ``TransformerLensKeyValueCache``, filled by
  ``forward(..., past_kv_cache=...)`` and, frozen, read by each block's ``past_kv_cache_entry``
  (what ``forward(start_at_layer=L, past_kv_cache=...)`` does; the blocks are driven by
  patching/forward.py to unembed only the readout position).
- TransformerBridge: HF's ``DynamicCache``, handed to the Bridge's attention as ``layer_past``
  (models/bridge_blocks.py says why that name, and by which name a full run gets it there).

A recording that comes back incomplete (a model whose attention ignores the cache) is refused, and
the engine runs every position as before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.tl_version import is_bridge

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)


def supported(model: Any) -> bool:
    """Whether restored runs of ``model``'s fast path can follow a cached prefix: a HookedTransformer's
    blocks always can; a Bridge's when models/bridge_blocks.py gives its blocks the positions' offset."""
    if is_bridge(model):
        from interp_pipeline.models.bridge_blocks import can_follow_a_prefix

        return can_follow_a_prefix(model)
    return True


class CorruptedKeysValues:
    """Records the keys and values of one corrupted run (``rows`` sequences of ``width`` tokens)."""

    def __init__(self, model: Any, rows: int, width: int):
        self.model, self.width = model, width
        self.bridge = is_bridge(model)
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        if self.bridge:
            from transformers import DynamicCache

            self._recording: Any = DynamicCache()
        else:
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

            self._recording = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, rows)

    def run_kwargs(self, tokens: Tensor) -> dict[str, Any]:
        """What the corrupted run's ``run_with_cache`` takes to fill the recording."""
        import torch

        if self.bridge:
            from interp_pipeline.models.bridge_blocks import recording_kwargs

            return recording_kwargs(self.model, self._recording)
        # With a cache, HookedTransformer asks for a padding mask (it would build one from a tokenizer);
        # none of these tokens is padding (positions past a prompt's end are never read), so all ones.
        return {"past_kv_cache": self._recording, "attention_mask": torch.ones_like(tokens)}

    def finish(self) -> bool:
        """Keeps the recorded keys and values; false (and a warning) when some layer recorded none."""
        if self.bridge:
            pairs = [(layer.keys, layer.values) for layer in self._recording.layers if layer.is_initialized]
            position_dim = 2  # HF: [batch, kv_heads, pos, d_head]
        else:
            pairs = [(entry.past_keys, entry.past_values) for entry in self._recording.entries]
            position_dim = 1  # TransformerLens: [batch, pos, kv_heads, d_head]
        self._recording = None
        complete = len(pairs) == self.model.cfg.n_layers and all(k.shape[position_dim] == self.width for k, _ in pairs)
        if not complete:
            logger.warning("causal tracing: %s recorded no keys and values in its corrupted run; every restored "
                           "run recomputes the positions before the restored one", type(self.model).__name__)
            return False
        self.keys = [k.movedim(position_dim, 1) for k, _ in pairs]  # [batch, pos, ...] for both
        self.values = [v.movedim(position_dim, 1) for _, v in pairs]
        return True

    def prefix(self, length: int, rows: Tensor) -> Any:
        """A fresh cache of positions ``0..length-1`` of the recorded ``rows``, in the form
        ``PatchedForward.blocks_from`` hands the blocks; None when ``length`` is 0."""
        if length == 0:
            return None
        keys = [k[rows, :length] for k in self.keys]
        values = [v[rows, :length] for v in self.values]
        if self.bridge:
            from transformers import DynamicCache

            # A new one per run: the attention appends the run's own keys to it.
            return DynamicCache(ddp_cache_data=[(k.movedim(1, 2), v.movedim(1, 2)) for k, v in zip(keys, values)])
        import torch
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
        from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

        # Frozen: the blocks read it and append nothing, so the cut copies are not grown in place.
        entries = [TransformerLensKeyValueCacheEntry(k, v, frozen=True) for k, v in zip(keys, values)]
        mask = torch.ones(len(keys[0]), length, dtype=torch.int, device=keys[0].device)
        return TransformerLensKeyValueCache(entries=entries, previous_attention_mask=mask, frozen=True)
