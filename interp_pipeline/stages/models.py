"""The load-model stage. This issue's source: a HookedTransformer built from a config, random init."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

SOURCES = ("config",)
DTYPES = ("float32", "float16", "bfloat16", "float64")


def resolve_device(device: str) -> str:
    """``auto`` is cuda when present, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_model_params(params: dict[str, Any]) -> None:
    source = params.get("source")
    if source not in SOURCES:
        raise ConfigError("source", f"expected one of {one_of(SOURCES)}, found '{source}'",
                          suggestion=did_you_mean(str(source), SOURCES))
    if params.get("dtype", "float32") not in DTYPES:
        raise ConfigError("dtype", f"expected one of {one_of(DTYPES)}, found '{params.get('dtype')}'",
                          suggestion=did_you_mean(str(params.get("dtype")), DTYPES))
    from transformer_lens import HookedTransformerConfig

    allowed = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    for key in params.get("cfg", {}):
        if key in ("seed", "device", "dtype"):
            raise ConfigError(f"cfg.{key}", f"is set by model.{key}, not inside model.cfg")
        if key not in allowed:
            raise ConfigError(f"cfg.{key}", f"expected a HookedTransformerConfig field, found '{key}'",
                              suggestion=did_you_mean(key, allowed))
    required = [
        f.name for f in dataclasses.fields(HookedTransformerConfig)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for key in required:
        if key not in params.get("cfg", {}):
            raise ConfigError(f"cfg.{key}", "expected a value (HookedTransformerConfig requires it), found none")


@stage("load_model", outputs=("model",), cache=False, preflight=_check_model_params)
def load_model(
    source: str,
    cfg: dict[str, Any],
    seed: int,
    device: str = "auto",
    dtype: str = "float32",
) -> HookedTransformer:
    """A HookedTransformer from ``cfg`` (HookedTransformerConfig fields), initialised from ``seed``.

    Not cached: rebuilding from the config is cheaper than storing it. Seeded, so
    the same config gives the same weights.
    """
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    config = HookedTransformerConfig(
        **cfg, seed=seed, device=resolve_device(device), dtype=getattr(torch, dtype)
    )
    model = HookedTransformer(config)
    model.eval()
    return model
