"""Running a TransformerBridge from block L on a residual stream: HookedTransformer's ``start_at_layer``.

A Bridge hands the whole forward to the HF model (``TransformerBridge.forward`` refuses
``start_at_layer``), so a patch in layer L would pay for every block before L. The blocks
themselves are ``model.blocks[i]`` (BlockBridge wrappers around the HF blocks, with the
TransformerLens hook names), so we call them in order as the HF model's own loop does, with
the arguments that loop would pass, then the final norm and the unembedding. Hooks fire as in
a full run, because they are the same modules.

What each HF block needs besides the residual stream is architecture-specific (a causal mask,
position ids, rotary cos/sin...); only architectures listed in ``_BLOCK_ARGUMENTS`` are run
this way, and ``can_start_at_block`` says no (logging once per architecture) for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()


def _gpt2_arguments(model: Any, resid: Tensor, offset: int = 0) -> dict[str, Any]:
    """What transformers' GPT2Model.forward hands each GPT2Block without padding (read in
    transformers 5's modeling_gpt2.py): a 4D additive causal mask (0 where a query may attend, the
    dtype's minimum elsewhere, as masking_utils builds it for eager attention, which the Bridge
    always loads) and the position ids. ``resid`` holds positions ``offset``.. (the earlier ones'
    keys and values come from a cache): the mask's rows are those queries, its columns every key
    from 0. GPT-2's positions enter once, at ``wpe`` before block 0, so the blocks take
    position_ids only to pass them on."""
    import torch

    n_pos = resid.shape[1]
    queries = torch.arange(offset, offset + n_pos, device=resid.device)
    allowed = torch.arange(offset + n_pos, device=resid.device)[None, :] <= queries[:, None]
    mask = torch.zeros(n_pos, offset + n_pos, dtype=resid.dtype, device=resid.device)
    mask = mask.masked_fill(~allowed, torch.finfo(resid.dtype).min)[None, None]  # [1, 1, query, key]
    return {"attention_mask": mask, "position_ids": queries[None]}


# HF architecture (config.architectures[0], the Bridge's cfg.architecture) -> its blocks' arguments.
_BLOCK_ARGUMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "GPT2LMHeadModel": _gpt2_arguments,
}
# Those whose arguments function also takes ``offset`` (the first position ``resid`` holds, the
# earlier ones' keys and values coming from a cache): a rotary model's position ids must start there.
_OFFSET_ARGUMENTS = {"GPT2LMHeadModel"}


def architecture(model: Any) -> str:
    """The HF architecture under a Bridge ('GPT2LMHeadModel')."""
    original = getattr(model, "original_model", None)
    return str(getattr(model.cfg, "architecture", None) or type(original).__name__)


def can_start_at_block(model: Any) -> bool:
    """Whether ``run_from_block`` knows this Bridge's architecture; if not, one warning per architecture."""
    name = architecture(model)
    if name in _BLOCK_ARGUMENTS and type(getattr(model, "original_model", None)).__name__ == name:
        return True
    if name not in _WARNED:
        _WARNED.add(name)
        logger.warning("TransformerBridge of architecture %s: no fast path (the patched layer cannot be started at, "
                       "only %s are known); every patch runs the whole model", name, ", ".join(_BLOCK_ARGUMENTS))
    return False


def can_follow_a_prefix(model: Any) -> bool:
    """Whether ``run_blocks`` can take ``past`` on this Bridge (see ``_OFFSET_ARGUMENTS``)."""
    return can_start_at_block(model) and architecture(model) in _OFFSET_ARGUMENTS


def run_blocks(model: Any, layer: int, resid: Tensor, past: Any = None) -> Tensor:
    """Blocks ``layer``.. of a Bridge on ``resid`` ([batch, pos, d_model], the stream at
    ``blocks.{layer}.hook_resid_pre``); the residual stream after the last block. ``past``: an HF
    cache holding the keys and values of the positions before ``resid``'s (every layer), or None.

    The cache goes in as ``layer_past``: the Bridge's attention (TransformerLens 3.9) reads
    ``past_key_values`` or ``layer_past``, while transformers 5's GPT2Block renames
    ``past_key_values`` to ``cache`` before its attention sees it; ``layer_past`` passes through
    the block's ``**kwargs`` untouched. The corrupted run fills its cache by the same route, and
    tracing/prefix_cache.py refuses a recording that came back empty, so a version in which the name
    stops reaching the attention falls back rather than attending to a missing prefix."""
    if layer >= len(model.blocks):
        return resid
    arguments_of = _BLOCK_ARGUMENTS[architecture(model)]
    if past is None:
        arguments = arguments_of(model, resid)
    else:
        if architecture(model) not in _OFFSET_ARGUMENTS:
            raise ValueError(f"{architecture(model)} blocks cannot follow cached keys and values (no offset)")
        arguments = {**arguments_of(model, resid, offset=past.get_seq_length(layer)), "layer_past": past}
    for block in model.blocks[layer:]:
        out = block(resid, **arguments)
        resid = out[0] if isinstance(out, tuple) else out  # transformers 4 blocks return tuples
    return resid


def unembed(model: Any, resid: Tensor) -> Tensor:
    """The final norm and the unembedding of a Bridge, on any subset of positions ([batch, r, d_model])."""
    return model.unembed(model.ln_final(resid))
