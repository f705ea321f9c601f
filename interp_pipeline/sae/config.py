"""The ``sae`` config group, checked and mapped onto SAELens's per-architecture training configs.

Our keys are the few a researcher sweeps (architecture, width, sparsity, learning
rate, token budget); everything else keeps SAELens's defaults. Keys that belong to
other architectures are ignored (``k`` for a standard SAE), so one sweep can span
architectures.

``variants`` lists SAEs to train together in one pass over the data (the
train_saes stage): each entry overrides some of the other keys. What decides the
batches (hook, batch size, token budget, held-out rows, seed) is shared by all of
them, so it cannot vary between entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk")
NORMALIZATIONS = ("none", "expected_average_only_in", "layer_norm")
LR_SCHEDULERS = ("constant", "cosineannealing", "cosineannealingwarmrestarts")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")


def _positive_int(params: Mapping[str, Any], key: str, *, minimum: int = 1, optional: bool = False) -> None:
    value = params.get(key)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, found {value!r}")


def _positive_float(params: Mapping[str, Any], key: str, *, zero_ok: bool = True) -> None:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(key, f"expected a number {'>=' if zero_ok else '>'} 0, found {value!r}")


def _choice(params: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> None:
    value = params.get(key, default)
    if value not in choices:
        raise ConfigError(key, f"expected one of {one_of(choices)}, found {value!r}",
                          suggestion=did_you_mean(str(value), choices))


def check_sae_params(params: Mapping[str, Any]) -> None:
    """Everything checkable before the activations exist (pre-flight); keys relative to ``sae``."""
    params = {**DEFAULTS, **params}
    _check_one_sae(params)
    if params.get("variants"):
        resolve_variants(params)


def _check_one_sae(params: Mapping[str, Any]) -> None:
    _choice(params, "architecture", ARCHITECTURES, "standard")
    _choice(params, "normalize_activations", NORMALIZATIONS, "none")
    _choice(params, "lr_scheduler", LR_SCHEDULERS, "constant")
    _choice(params, "device", DEVICES, "auto")
    _choice(params, "dtype", DTYPES, "float32")
    if params.get("d_sae") is None and params.get("expansion_factor") is None:
        raise ConfigError("d_sae", "expected d_sae or expansion_factor, found neither")
    _positive_int(params, "d_sae", optional=True)
    _positive_int(params, "expansion_factor", optional=True)
    _positive_int(params, "d_in", optional=True)
    for key in ("train_batch_size_tokens", "training_tokens", "log_every", "dead_feature_window",
                "feature_sampling_window", "buffer_chunks"):
        _positive_int(params, key)
    for key in ("lr_warm_up_steps", "lr_decay_steps", "l1_warm_up_steps", "eval_tokens",
                "checkpoint_every"):
        _positive_int(params, key, minimum=0)
    _positive_float(params, "lr", zero_ok=False)
    _positive_float(params, "l1_coefficient")
    _positive_float(params, "l0_coefficient")
    if params["architecture"] in ("topk", "batchtopk", "matryoshka_batchtopk"):
        _positive_int(params, "k")
    if params["training_tokens"] < params["train_batch_size_tokens"]:
        raise ConfigError("training_tokens", f"expected at least one batch ({params['train_batch_size_tokens']} "
                                             f"tokens, sae.train_batch_size_tokens), found {params['training_tokens']}")
    widths = list(params.get("matryoshka_widths") or [])
    if params["architecture"] == "matryoshka_batchtopk" and widths:
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths) or widths != sorted(set(widths)):
            raise ConfigError("matryoshka_widths", f"expected strictly increasing positive widths, found {widths}")


# What the stage's signature defaults to; the check above reads them for keys left out.
DEFAULTS: dict[str, Any] = dict(
    hook=None, architecture="standard", d_in=None, d_sae=None, expansion_factor=8,
    l1_coefficient=5.0, l1_warm_up_steps=0, l0_coefficient=1.0, k=32, matryoshka_widths=None,
    lr=3e-4, lr_scheduler="constant", lr_warm_up_steps=0, lr_decay_steps=0, lr_end=None,
    train_batch_size_tokens=4096, training_tokens=2_000_000, allow_fewer_tokens=False,
    eval_tokens=4096, dead_feature_window=1000, feature_sampling_window=2000,
    normalize_activations="none", log_every=50, checkpoint_every=1000, buffer_chunks=8, device="auto",
    dtype="float32", seed=0, variants=None,
)

# What decides the batches, or how the one pass runs: the same for every SAE trained in it.
# normalize_activations too: estimating the scale draws the first batches, which then do not reach training.
SHARED_IN_ONE_PASS = ("hook", "d_in", "train_batch_size_tokens", "training_tokens", "allow_fewer_tokens",
                      "eval_tokens", "normalize_activations", "log_every", "checkpoint_every", "buffer_chunks",
                      "device", "seed")
_VARIANT_KEYS = tuple(k for k in DEFAULTS if k not in SHARED_IN_ONE_PASS and k != "variants") + ("name",)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def resolve_variants(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: params}`` for each entry of ``params["variants"]``, merged over the rest; checked.

    A variant's name is its ``name``, or the keys it sets (``l1_coefficient-2.0``); errors
    name the entry (``variants[1].lr``).
    """
    params = {**DEFAULTS, **params}
    variants = params.get("variants") or []
    if not isinstance(variants, (list, tuple)) or not variants:
        raise ConfigError("variants", f"expected a list of SAE settings (e.g. [{{l1_coefficient: 1}}, "
                                      f"{{l1_coefficient: 5}}]), found {variants!r}")
    base = {k: v for k, v in params.items() if k != "variants"}
    resolved: dict[str, dict[str, Any]] = {}
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not isinstance(variant, Mapping):
            raise ConfigError(where, f"expected a mapping of SAE settings, found {variant!r}")
        for key in variant:
            if key in SHARED_IN_ONE_PASS:
                raise ConfigError(f"{where}.{key}", "expected the same value for every SAE of one pass (it decides "
                                                    f"their batches or how the pass runs), found it set here",
                                  suggestion=f"set sae.{key}, or sweep it with -m (separate runs)")
            if key not in _VARIANT_KEYS:
                raise ConfigError(f"{where}.{key}", f"expected an SAE setting ({one_of(_VARIANT_KEYS)})",
                                  suggestion=did_you_mean(str(key), _VARIANT_KEYS))
        merged = {**base, **{k: v for k, v in variant.items() if k != "name"}}
        try:
            _check_one_sae(merged)
        except ConfigError as error:
            key = f"{where}.{error.key}" if error.key in variant else error.key
            raise ConfigError(key, error.message, suggestion=error.suggestion) from None
        name = str(variant.get("name") or "_".join(f"{k}-{v}" for k, v in variant.items()) or f"sae{index}")
        name = _NAME_UNSAFE.sub("_", name)
        if name in resolved:
            raise ConfigError(f"{where}.name", f"expected a name no other entry has, found '{name}' twice",
                              suggestion="give the entries distinct settings or a name: key")
        resolved[name] = merged
    return resolved


def resolve_d_sae(params: Mapping[str, Any], d_in: int) -> int:
    if params.get("d_sae") is not None:
        return int(params["d_sae"])
    return int(params["expansion_factor"]) * d_in


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _architecture_fields(params: Mapping[str, Any], d_sae: int) -> dict[str, Any]:
    architecture = params["architecture"]
    if architecture in ("standard", "gated"):
        return {"l1_coefficient": float(params["l1_coefficient"]), "l1_warm_up_steps": int(params["l1_warm_up_steps"])}
    if architecture == "jumprelu":
        return {"l0_coefficient": float(params["l0_coefficient"]), "l0_warm_up_steps": int(params["l1_warm_up_steps"])}
    fields: dict[str, Any] = {"k": int(params["k"])}
    if architecture == "matryoshka_batchtopk":
        widths = [int(w) for w in params.get("matryoshka_widths") or []]
        # Default levels: an eighth, a quarter, a half and all of the dictionary.
        widths = widths or sorted({max(1, d_sae // 8), max(1, d_sae // 4), max(1, d_sae // 2), d_sae})
        if widths[-1] != d_sae:
            widths.append(d_sae)  # SAELens would add it too, with a warning
        if widths[-2:-1] and widths[-2] >= d_sae:
            raise ConfigError("matryoshka_widths", f"expected widths below d_sae={d_sae}, found {widths[:-1]}")
        fields["matryoshka_widths"] = widths
    return fields


def training_sae(params: Mapping[str, Any], d_in: int, *, hook: str | None = None, device: str = "cpu") -> Any:
    """A fresh SAELens training SAE for ``params`` (the ``sae`` group) and activations of width ``d_in``."""
    from sae_lens.registry import get_sae_training_class
    from sae_lens.saes.sae import SAEMetadata

    params = {**DEFAULTS, **params}
    if params.get("d_in") is not None and int(params["d_in"]) != d_in:
        raise ConfigError("d_in", f"expected the width of the activations ({d_in}"
                                  f"{f' for {hook}' if hook else ''}), found {params['d_in']}")
    d_sae = resolve_d_sae(params, d_in)
    sae_class, cfg_class = get_sae_training_class(params["architecture"])
    cfg = cfg_class(
        d_in=d_in, d_sae=d_sae, dtype=params["dtype"], device=device,
        normalize_activations=params["normalize_activations"],
        # Per-head hooks (hook_z) are trained flattened, n_heads * d_head wide; SAELens's
        # reshape_activations="hook_z" would flatten again inside the SAE (for splicing, later).
        metadata=SAEMetadata(hook_name=hook),
        **_architecture_fields(params, d_sae),
    )
    return sae_class(cfg)


def trainer_config(params: Mapping[str, Any], *, total_tokens: int, device: str, norm_batches: int) -> Any:
    """SAELens's SAETrainerConfig: W&B off, no checkpoints of its own (the stage cache keeps the result)."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    params = {**DEFAULTS, **params}
    return SAETrainerConfig(
        total_training_samples=int(total_tokens),
        train_batch_size_samples=int(params["train_batch_size_tokens"]),
        lr=float(params["lr"]),
        # SAELens's runner default; only the cosine schedules use it.
        lr_end=float(params["lr"]) / 10 if params.get("lr_end") is None else float(params["lr_end"]),
        lr_scheduler_name=params["lr_scheduler"],
        lr_warm_up_steps=int(params["lr_warm_up_steps"]),
        lr_decay_steps=int(params["lr_decay_steps"]),
        device=device,
        dead_feature_window=int(params["dead_feature_window"]),
        feature_sampling_window=int(params["feature_sampling_window"]),
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=norm_batches,
    )
