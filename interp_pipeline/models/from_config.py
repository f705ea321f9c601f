"""Models built from a config (``model=tiny``, and the toy models the pipeline trains), on either TransformerLens.

On TransformerLens 3 they are HookedTransformers built from a HookedTransformerConfig. TransformerLens
4 has no HookedTransformer; there they are TransformerBridges around TransformerLens's own native
model (``TransformerBridge.boot_native`` on a TransformerBridgeConfig): the same hook names
(``blocks.0.attn.hook_z``, ``hook_embed``), the same config fields for everything the toy configs
set, no Hugging Face class in between. The numbers differ (another initialisation), the analyses
are the same code. ``model.cfg`` fields in the configs are checked against whichever class is here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Any

from interp_pipeline.common.tl_version import has_hooked_transformer, is_hooked_transformer

NATIVE_ARCHITECTURE = "TransformerLensNative"  # a boot_native bridge's cfg.architecture


def config_class() -> type:
    """HookedTransformerConfig on TransformerLens 3, TransformerBridgeConfig on 4."""
    if has_hooked_transformer():
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig
    from transformer_lens import TransformerBridgeConfig

    return TransformerBridgeConfig


@functools.lru_cache(maxsize=1)
def _parameters() -> dict[str, inspect.Parameter]:
    """The config class's constructor fields. TransformerBridgeConfig's ``__init__`` declares its own
    and takes the rest (its dataclass base's fields) through ``**kwargs``, which swallows any name:
    a misspelt key would be dropped silently, so the fields are listed here instead."""
    cls = config_class()
    fields = {f.name: inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=None if f.default is dataclasses.MISSING else f.default)
              for f in dataclasses.fields(cls) if f.init}
    if not has_hooked_transformer():
        fields.update({name: p for name, p in inspect.signature(cls).parameters.items()
                       if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)})
    return fields


def field_names() -> set[str]:
    return set(_parameters())


def required_fields() -> list[str]:
    """Fields the config class cannot do without."""
    if has_hooked_transformer():
        return [f.name for f in dataclasses.fields(config_class()) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    return [name for name, p in _parameters().items() if p.default is inspect.Parameter.empty]


def field_types() -> dict[str, Any]:
    """Each field's annotation (dataclass fields, and on 4 the constructor's own parameters)."""
    cls = config_class()
    hints = typing.get_type_hints(cls)
    if not has_hooked_transformer():
        hints.update(typing.get_type_hints(cls.__init__))
    return hints


def make_config(fields: Mapping[str, Any], **runtime: Any) -> Any:
    """The config class built from ``fields`` plus ``runtime`` (seed, device, dtype)."""
    return config_class()(**fields, **runtime)


def build(config: Any, tokenizer: Any = None, *, meta: bool = False) -> Any:
    """The model of ``config`` (randomly initialised, seeded by ``config.seed``), in eval mode;
    with ``meta``, on torch's meta device (no memory, no weights: pre-flight's shapes)."""
    import contextlib

    import torch

    place = torch.device("meta") if meta else contextlib.nullcontext()
    if has_hooked_transformer():
        from transformer_lens import HookedTransformer

        with place:
            model = HookedTransformer(config, tokenizer=tokenizer, move_to_device=not meta)
    else:
        from transformer_lens import TransformerBridge

        device = None if meta else getattr(config, "device", None)
        late = tokenizer is not None and not _encodes_a(tokenizer)
        with place:
            model = TransformerBridge.boot_native(config, tokenizer=None if late else tokenizer, device=device,
                                                  dtype=getattr(config, "dtype", None))
        if late:
            _attach_tokenizer(model, tokenizer)
    return model.eval()


def _encodes_a(tokenizer: Any) -> bool:
    try:
        tokenizer.encode("a")
    except Exception:  # tokenizers raises a bare Exception for a word-level vocabulary's unknown word
        return False
    return True


def _attach_tokenizer(model: Any, tokenizer: Any) -> None:
    """Give a booted Bridge a tokenizer that cannot encode "a". TransformerLens 4's boot encodes "a" to
    learn whether the tokenizer adds BOS, and a task's word-level tokenizer refuses it (it has no unknown
    token, on purpose: tasks/tokenizers.py); so the same normalisation, and the same test on a word of
    the tokenizer's own vocabulary, then the tokenizer set as on a first assignment."""
    from transformer_lens.model_bridge.sources._hf_format import setup_tokenizer

    tokenizer = setup_tokenizer(tokenizer, default_padding_side=getattr(model.cfg, "default_padding_side", None))
    word = next(w for w in tokenizer.get_vocab() if w not in tokenizer.all_special_tokens)
    ids = tokenizer.encode(word)
    model.cfg.tokenizer_prepends_bos = len(ids) > 1 and ids[0] == tokenizer.bos_token_id
    model.cfg.tokenizer_appends_eos = len(ids) > 1 and ids[-1] == tokenizer.eos_token_id
    model.tokenizer = tokenizer


def is_native_bridge(model: Any) -> bool:
    """A TransformerBridge that boot_native built (TransformerLens 4's config-built model)."""
    return getattr(getattr(model, "cfg", None), "architecture", None) == NATIVE_ARCHITECTURE and \
        hasattr(model, "original_model")


def is_config_built(model: Any) -> bool:
    """A model :func:`build` makes: a HookedTransformer, or a boot_native bridge."""
    return is_hooked_transformer(model) or is_native_bridge(model)


def config_values(model: Any) -> dict[str, Any]:
    """``model.cfg``'s constructor fields, as :func:`make_config` takes them back."""
    return {name: getattr(model.cfg, name) for name in _parameters() if hasattr(model.cfg, name)}


def copy_of(model: Any) -> Any:
    """An independent copy of a config-built model: built again from its config, given its weights."""
    fresh = build(make_config(config_values(model)), tokenizer=getattr(model, "tokenizer", None))
    fresh.load_state_dict(model.state_dict())
    return fresh
