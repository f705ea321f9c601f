"""Which TransformerLens is installed, and whether it still has HookedTransformer.

TransformerLens 4 removed HookedTransformer (with HookedTransformerConfig, ``utils`` and
``loading_from_pretrained``); TransformerBridge is its only model class. SAELens pins
TransformerLens below 4, so the project runs on 3.9, and scripts/tl4_check.sh runs the parts
that need no SAELens on 4 (README "TransformerLens 4"). Code that uses a HookedTransformer-only
name asks here first instead of importing it, since on 4 that import raises.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from typing import Any


@functools.lru_cache(maxsize=1)
def major() -> int:
    """TransformerLens's major version, from its metadata: importing the package takes seconds."""
    return int(importlib.metadata.version("transformer-lens").split(".")[0])


def has_hooked_transformer() -> bool:
    return major() < 4


def is_hooked_transformer(model: Any) -> bool:
    """``model`` is a HookedTransformer; False, without importing anything, where transformer_lens
    is not imported yet (then no HookedTransformer exists) or has none (TransformerLens 4)."""
    module = sys.modules.get("transformer_lens")
    if module is None or not has_hooked_transformer():
        return False
    return isinstance(model, module.HookedTransformer)


def is_bridge(model: Any) -> bool:
    """``model`` is a TransformerBridge (on 3.9 and 4); False, without importing anything, where
    transformer_lens is not imported yet."""
    if "transformer_lens" not in sys.modules:
        return False
    from transformer_lens.model_bridge import TransformerBridge

    return isinstance(model, TransformerBridge)
