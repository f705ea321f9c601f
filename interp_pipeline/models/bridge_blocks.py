"""Running a TransformerBridge from block L on a residual stream: HookedTransformer's ``start_at_layer``.

A Bridge hands the whole forward to the HF model (``TransformerBridge.forward`` refuses
``start_at_layer``), so a patch in layer L would pay for every block before L. The blocks
themselves are ``model.blocks[i]`` (BlockBridge wrappers around the HF blocks, with the
TransformerLens hook names), so we call them in order as the HF model's own loop does, with
the arguments that loop would pass, then the final norm and the unembedding. Hooks fire as in
a full run, because they are the same modules (the Bridge puts its wrappers into the HF module
tree: the base model's ``rotary_emb`` and ``norm`` are the Bridge's ``rotary_emb`` and ``ln_final``).

What each HF block needs besides the residual stream is architecture-specific (a causal mask,
position ids, rotary cos/sin, one of each per attention type...); only architectures listed in
``_BLOCK_ARGUMENTS`` are run this way, and ``can_start_at_block`` says no (logging once per
architecture) for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()
_SAID_FAST: set[str] = set()


def _gpt2_arguments(model: Any, resid: Tensor, past: Any = None) -> list[dict[str, Any]]:
    """What transformers' GPT2Model.forward hands each GPT2Block without padding (read in
    transformers 5's modeling_gpt2.py): a 4D additive causal mask (0 where a query may attend, the
    dtype's minimum elsewhere, as masking_utils builds it for eager attention, which the Bridge
    always loads) and the position ids. ``resid`` holds positions ``offset``.. (``past``, an HF
    cache, holds the earlier ones' keys and values): the mask's rows are those queries, its columns
    every key from 0. GPT-2's positions enter once, at ``wpe`` before block 0, so the blocks take
    position_ids only to pass them on."""
    import torch

    n_pos, offset = resid.shape[1], _offset(past)
    queries = torch.arange(offset, offset + n_pos, device=resid.device)
    allowed = torch.arange(offset + n_pos, device=resid.device)[None, :] <= queries[:, None]
    mask = torch.zeros(n_pos, offset + n_pos, dtype=resid.dtype, device=resid.device)
    mask = mask.masked_fill(~allowed, torch.finfo(resid.dtype).min)[None, None]  # [1, 1, query, key]
    arguments = {"attention_mask": mask, "position_ids": queries[None]}
    return [arguments] * len(model.blocks)


def _offset(past: Any) -> int:
    """The first position after a cache's (every layer holds the same prefix); what the HF model loop
    calls ``past_seen_tokens``."""
    return 0 if past is None else past.get_seq_length()


def _position_ids(resid: Tensor, past: Any) -> Tensor:
    import torch

    offset = _offset(past)
    return torch.arange(offset, offset + resid.shape[1], device=resid.device)[None]


def _rotary_arguments(model: Any, resid: Tensor, past: Any = None) -> list[dict[str, Any]]:
    """What LlamaModel.forward and GPTNeoXModel.forward hand each decoder layer without padding
    (transformers 5's modeling_llama.py, modeling_gpt_neox.py): the causal mask from masking_utils'
    ``create_causal_mask`` (the same call, on the model's own config), the position ids, and
    ``position_embeddings``, the (cos, sin) of the base model's own ``rotary_emb`` (the Bridge's
    RotaryEmbeddingBridge, so its hook_cos / hook_sin fire as in a full run; it reads its input
    only for dtype and device, so ``rotary_emb.hook_in`` sees the stream at the start block, where
    a full run shows it the embedding).

    With ``past`` (an HF cache of the positions before ``resid``'s), as the model loop does when its
    cache holds earlier positions: position ids (and so cos/sin) from the cache's length on, and the
    cache handed to the mask function, which reads from it the queries' offset and the keys' length
    (rows: the queries, columns: every key from 0)."""
    from transformers.masking_utils import create_causal_mask

    base = model.original_model.base_model  # LlamaModel, GPTNeoXModel
    position_ids = _position_ids(resid, past)
    # The mask functions' fourth argument, positional here, is past_key_values in transformers 5.9 and cache later.
    arguments = {"attention_mask": create_causal_mask(base.config, resid, None, past, position_ids=position_ids),
                 "position_ids": position_ids,
                 "position_embeddings": base.rotary_emb(resid, position_ids=position_ids)}
    return [arguments] * len(model.blocks)


def _windowed_rotary_arguments(model: Any, resid: Tensor, past: Any = None) -> list[dict[str, Any]]:
    """What Qwen2Model, Qwen3Model and MistralModel.forward hand each decoder layer (transformers 5's
    modeling_qwen2.py, modeling_qwen3.py, modeling_mistral.py): ``_rotary_arguments``' position ids and
    (cos, sin), but a mask per attention type. Qwen's ``config.layer_types`` says each layer's (sliding
    from ``max_window_layers`` on when ``use_sliding_window``); Mistral's loop ignores layer_types and
    gives every layer the sliding-window mask when ``config.sliding_window`` is set, the causal one
    otherwise. ``past`` as in ``_rotary_arguments``."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    base = model.original_model.base_model  # Qwen2Model, Qwen3Model, MistralModel
    config = base.config
    if config.model_type == "mistral":
        types = ["sliding_attention" if config.sliding_window is not None else "full_attention"] * len(model.blocks)
    else:
        types = list(config.layer_types)
    position_ids = _position_ids(resid, past)
    make = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}
    masks = {kind: make[kind](config, resid, None, past, position_ids=position_ids) for kind in set(types)}
    position_embeddings = base.rotary_emb(resid, position_ids=position_ids)
    return [{"attention_mask": masks[kind], "position_ids": position_ids, "position_embeddings": position_embeddings}
            for kind in types[:len(model.blocks)]]


def _gemma3_arguments(model: Any, resid: Tensor, past: Any = None) -> list[dict[str, Any]]:
    """What Gemma3TextModel.forward hands each decoder layer (transformers 5's modeling_gemma3.py):
    per attention type (``config.layer_types[i]``: sliding or full), its mask (masking_utils'
    ``create_sliding_window_causal_mask`` or ``create_causal_mask``) and its own rotary (cos, sin)
    (``rotary_emb(x, position_ids, layer_type)``: local and global layers use different bases).
    ``past`` as in ``_rotary_arguments``. Its layers are all full ones (prefix_cache's DynamicCache is
    built without the config, so it keeps every position of a sliding layer too): the sliding mask
    function then sees keys 0.. and applies the window itself."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    base = model.original_model.base_model  # Gemma3TextModel
    config = base.config
    position_ids = _position_ids(resid, past)
    masks = {"full_attention": create_causal_mask(config, resid, None, past, position_ids=position_ids),
             "sliding_attention": create_sliding_window_causal_mask(config, resid, None, past,
                                                                    position_ids=position_ids)}
    by_type = {kind: {"attention_mask": masks[kind], "position_ids": position_ids,
                      "position_embeddings": base.rotary_emb(resid, position_ids, kind)}
               for kind in set(config.layer_types)}
    return [by_type[config.layer_types[i]] for i in range(len(model.blocks))]


# HF architecture (config.architectures[0], the Bridge's cfg.architecture) -> each block's arguments.
_BLOCK_ARGUMENTS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "GPT2LMHeadModel": _gpt2_arguments,
    "GPTNeoXForCausalLM": _rotary_arguments,
    "LlamaForCausalLM": _rotary_arguments,
    "Gemma3ForCausalLM": _gemma3_arguments,
    "Qwen2ForCausalLM": _windowed_rotary_arguments,
    "Qwen3ForCausalLM": _windowed_rotary_arguments,
    "MistralForCausalLM": _windowed_rotary_arguments,
}
# Those whose arguments function also takes ``past`` (the cache of the positions before ``resid``'s)
# and whose Bridge attention reads it as ``layer_past``: the positions, rotary angles and mask start there.
_OFFSET_ARGUMENTS = set(_BLOCK_ARGUMENTS)


def architecture(model: Any) -> str:
    """The HF architecture under a Bridge ('GPT2LMHeadModel')."""
    original = getattr(model, "original_model", None)
    return str(getattr(model.cfg, "architecture", None) or type(original).__name__)


def _known(model: Any, name: str) -> bool:
    if name not in _BLOCK_ARGUMENTS or type(getattr(model, "original_model", None)).__name__ != name:
        return False
    # An encoder-style Gemma 3 (bidirectional attention) builds other masks than ours.
    return not getattr(model.original_model.config, "use_bidirectional_attention", False)


def can_start_at_block(model: Any) -> bool:
    """Whether ``run_blocks`` knows this Bridge's architecture; once per architecture, the log says which way."""
    name = architecture(model)
    if _known(model, name):
        if name not in _SAID_FAST:
            _SAID_FAST.add(name)
            logger.info("TransformerBridge of architecture %s: fast path (its blocks run from the patched layer)", name)
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
    ``past_key_values`` (when not None) or ``layer_past``, while transformers 5's GPT2Block,
    LlamaDecoderLayer, Gemma3DecoderLayer... rename ``past_key_values`` to ``cache`` before their
    attention sees it (transformers 5.9's hand it on, as None when not given); ``layer_past`` passes
    through those blocks' ``**kwargs`` untouched, and GPTNeoXLayer takes it by that name and hands it
    on. The corrupted run fills its cache by the same route (``recording_kwargs``), and
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
        arguments = [{**kwargs, "layer_past": past} for kwargs in arguments_of(model, resid, past)]
    for block, kwargs in zip(model.blocks[layer:], arguments[layer:]):
        out = block(resid, **kwargs)
        resid = out[0] if isinstance(out, tuple) else out  # transformers 4 blocks return tuples
    return resid


def recording_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """What a full run of a Bridge takes for its attention to append every layer's keys and values
    to ``cache`` (an HF cache), by the route ``run_blocks`` hands them back.

    The model gets the cache under its loop's own name (``cache`` from the transformers 5.x that
    renamed it, ``past_key_values`` before): with ``use_cache`` on, a loop given none makes its own and
    hands it to the blocks, and where the blocks pass it on as ``past_key_values`` (transformers 5.9)
    the Bridge's attention reads that one first. Where they pass it on as ``cache``, which the
    attention does not read, ``layer_past`` (the same cache) reaches it through the blocks' ``**kwargs``;
    except where the HF block itself takes ``layer_past`` (GPT-NeoX, whose loop hands it its cache by
    that name): there a second one is a duplicate argument."""
    import inspect

    loop = inspect.signature(model.original_model.forward).parameters  # through deprecate_kwarg's wrapper
    kwargs = {("cache" if "cache" in loop else "past_key_values"): cache}
    if "layer_past" not in inspect.signature(model.blocks[0].original_component.forward).parameters:
        kwargs["layer_past"] = cache
    return kwargs


def unembed(model: Any, resid: Tensor) -> Tensor:
    """The final norm and the unembedding of a Bridge, on any subset of positions ([batch, r, d_model]),
    and what the HF causal-LM head does after ``lm_head``: Gemma's final logit softcapping, when its
    config sets one (Gemma3ForCausalLM.forward)."""
    import torch

    logits = model.unembed(model.ln_final(resid))
    cap = getattr(model.original_model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits
