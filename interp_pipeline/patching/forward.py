"""Running a model on the corrupted prompts with patches, as cheaply as exactness allows.

Two paths give the same numbers:

- fast (HookedTransformer): a patch in layer L cannot change layers before L, so
  the run starts at block L from the corrupted run's cached ``resid_pre`` (what
  ``HookedTransformer.forward(start_at_layer=L)`` does), and the final LayerNorm
  and unembedding run only at the positions the metric reads.
- fast (TransformerBridge of a known architecture: GPT-2, GPT-NeoX, Llama, Gemma 3, Qwen2, Qwen3,
  Mistral): the same, with the Bridge's own block wrappers called from block L (models/bridge_blocks.py:
  the HF model's loop refuses ``start_at_layer``, so we run its blocks ourselves).
- generic (any model with TransformerLens hooks, e.g. a Bridge of another
  architecture, or a shortformer model whose blocks need the token positions): a
  full ``run_with_hooks`` on the corrupted tokens, logits gathered afterwards.

Both run ``copies`` patched versions of a group of prompts in one batch,
patch-major (row ``j * len(rows) + i`` is prompt ``rows[i]`` under patch ``j``).
TransformerLens has no call for "run blocks L.. and unembed a few positions", so
the fast path drives the blocks itself, as ``forward`` does.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.tl_version import is_bridge, is_hooked_transformer

if TYPE_CHECKING:
    from torch import Tensor


def supports_fast_path(model: Any) -> bool:
    if is_bridge(model):
        from interp_pipeline.models.bridge_blocks import can_start_at_block

        return can_start_at_block(model)  # logs once when an architecture falls back
    return is_hooked_transformer(model) and model.cfg.positional_embedding_type != "shortformer"


def run_grouped_with_cache(model: Any, tokens: Tensor, names: set[str],
                           batch_size_prompts: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and the named activations of a plain run, ``batch_size_prompts`` prompts at a time."""
    import torch

    logits, caches = [], []
    for start in range(0, tokens.shape[0], batch_size_prompts):
        out, cache = model.run_with_cache(tokens[start:start + batch_size_prompts], names_filter=lambda n: n in names)
        logits.append(out)
        caches.append({name: cache[name] for name in names})
    return torch.cat(logits), {name: torch.cat([c[name] for c in caches]) for name in names}


class PatchedForward:
    """Patched runs of one model on one batch of corrupted prompts."""

    def __init__(self, model: Any, corrupted: Tensor, corrupted_resid_pre: dict[int, Tensor] | None, *, fast: bool):
        self.model = model
        self.corrupted = corrupted
        self.fast = fast
        self.starts = corrupted_resid_pre  # layer -> the corrupted run's resid_pre there (fast path)
        if fast and corrupted_resid_pre is None:
            raise ValueError("the fast path needs the corrupted run's resid_pre at every layer")

    def run(self, layer: int, rows: Tensor, copies: int, fwd_hooks: list[tuple[str, Any]], positions: Tensor) -> Tensor:
        """Logits at ``positions`` ([copies * len(rows), r]) of ``copies`` patched runs of ``rows``,
        for patches no earlier than ``layer``; shape [copies * len(rows), r, d_vocab]."""
        if not self.fast:
            logits = self.model.run_with_hooks(self.corrupted[rows].repeat(copies, 1), fwd_hooks=fwd_hooks)
            return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return self.run_from(layer, self.starts[layer][rows].repeat(copies, 1, 1), fwd_hooks, positions)

    def run_from(self, layer: int, resid: Tensor, fwd_hooks: list[tuple[str, Any]], positions: Tensor,
                 past: Any = None) -> Tensor:
        """Blocks ``layer``.. on a residual stream, then logits at ``positions`` only. ``past``: the keys
        and values of earlier positions that ``resid`` follows (tracing/prefix_cache.py), or None."""
        with self.model.hooks(fwd_hooks=fwd_hooks) if fwd_hooks else nullcontext():
            resid = self.blocks_from(layer, resid, past)
            return self.logits(resid.gather(1, positions.unsqueeze(-1).expand(-1, -1, resid.shape[-1])))

    def blocks_from(self, layer: int, resid: Tensor, past: Any = None) -> Tensor:
        """Blocks ``layer``.. on a residual stream (with the hooks the caller has put on): the stream
        after the last block. ``past`` as in ``run_from``."""
        model = self.model
        if is_bridge(model):
            from interp_pipeline.models import bridge_blocks

            return bridge_blocks.run_blocks(model, layer, resid, past)
        for index in range(layer, len(model.blocks)):
            entry = None if past is None else past.entries[index]
            resid = model.blocks[index](resid, past_kv_cache_entry=entry)
        return resid

    def logits(self, resid: Tensor) -> Tensor:
        """The final norm and the unembedding of a stream after the last block, at the positions it holds."""
        from transformer_lens.utilities.activation_functions import apply_softcap

        model = self.model
        if is_bridge(model):
            from interp_pipeline.models import bridge_blocks

            return bridge_blocks.unembed(model, resid)
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return apply_softcap(model.unembed(resid), model.cfg.output_logits_soft_cap)
