"""The ``sae`` config group, checked against its schema and mapped onto SAELens's per-architecture configs.

Every setting's name, type, range, choices and default is SAEConfig's
(interp_pipeline.config.schema). ``settings`` checks a mapping against it, whether
Hydra composed it or it came as train_sae's keyword arguments from a notebook, and
completes it. Keys only some architectures read (``k``, ``l1_coefficient`` ...) are
None unless given, and refused by the others, as SAELens's per-architecture configs
refuse them; left out, they take the default of the architecture that reads them.

``variants`` lists SAEs to train together in one pass over the data (the
train_sae stage): each entry overrides some of the other keys, and its architecture
decides which keys it may set; keys of the others that only another architecture
reads are not inherited. What decides the batches (hook, batch size, token budget,
held-out rows, seed) is shared by all of them, so it cannot vary between entries.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from interp_pipeline.config.schema import SAE_ARCHITECTURES, SAEConfig
from interp_pipeline.config.settings import settings_of
from interp_pipeline.errors import ConfigError, did_you_mean, one_of

ARCHITECTURES = SAE_ARCHITECTURES
SETTINGS = tuple(f.name for f in dataclasses.fields(SAEConfig))
# {key: (the architectures that read it, its default for them)}, from the schema's ``used_by``.
PER_ARCHITECTURE: dict[str, tuple[tuple[str, ...], Any]] = {
    f.name: (f.metadata["architectures"], f.metadata["architecture_default"])
    for f in dataclasses.fields(SAEConfig) if "architectures" in f.metadata}


def check_sae_params(params: Mapping[str, Any]) -> None:
    """Everything checkable before the activations exist (pre-flight); keys relative to ``sae``."""
    sae_settings(params)


def sae_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against SAEConfig and completed: one SAE's settings, or with ``variants``
    the base each entry overrides (every entry is checked too). ConfigError keys are relative to ``sae``."""
    full = settings_of(SAEConfig, params)
    if full["training_tokens"] < full["train_batch_size_tokens"]:
        raise ConfigError("training_tokens", f"expected at least one batch ({full['train_batch_size_tokens']} "
                                             f"tokens, sae.train_batch_size_tokens), found {full['training_tokens']}")
    if not full["variants"]:
        return _one_sae(full)
    architectures = {v.get("architecture", full["architecture"]) for v in full["variants"] if isinstance(v, Mapping)}
    _refuse_unread(full, architectures)
    resolve_variants(full)
    return full


def _one_sae(full: dict[str, Any]) -> dict[str, Any]:
    architecture = full["architecture"]
    _refuse_unread(full, {architecture})
    if full["d_sae"] is None and full["expansion_factor"] is None:
        raise ConfigError("d_sae", "expected d_sae or expansion_factor, found neither")
    widths = full["matryoshka_widths"] or []
    if any(w < 1 for w in widths) or widths != sorted(set(widths)):
        raise ConfigError("matryoshka_widths", f"expected strictly increasing positive widths, found {widths}")
    return {**full, **{key: default for key, (users, default) in PER_ARCHITECTURE.items()
                       if architecture in users and full[key] is None}}


def _refuse_unread(full: Mapping[str, Any], architectures: set[str]) -> None:
    """A key given for architectures none of which reads it is a mistake (a sweep over the wrong key), not a no-op."""
    for key, (users, _) in PER_ARCHITECTURE.items():
        if full[key] is not None and not architectures & set(users):
            raise ConfigError(key, f"expected no value for a {' or '.join(sorted(map(str, architectures)))} SAE "
                                   f"(only {', '.join(users)} read it), found {full[key]!r}",
                              suggestion="remove it or set it to null, or pick an architecture that reads it")


# What decides the batches, or how the one pass runs: the same for every SAE trained in it.
# normalize_activations too: estimating the scale draws the first batches, which then do not reach training.
SHARED_IN_ONE_PASS = ("hook", "d_in", "train_batch_size_tokens", "training_tokens", "allow_fewer_tokens",
                      "eval_tokens", "normalize_activations", "log_every", "checkpoint_every", "buffer_chunks",
                      "device", "seed")
_VARIANT_KEYS = tuple(k for k in SETTINGS if k not in SHARED_IN_ONE_PASS and k != "variants") + ("name",)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def resolve_variants(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: settings}`` for each entry of ``params["variants"]``, merged over the rest; checked.

    A variant's name is its ``name``, or the keys it sets (``l1_coefficient-2.0``); errors
    name the entry (``variants[1].lr``).
    """
    base = settings_of(SAEConfig, params)
    variants = base["variants"]
    if not variants:
        raise ConfigError("variants", f"expected a list of SAE settings (e.g. [{{l1_coefficient: 1}}, "
                                      f"{{l1_coefficient: 5}}]), found {variants!r}")
    resolved: dict[str, dict[str, Any]] = {}
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        merged = _variant_settings(base, variant, where)
        name = str(variant.get("name") or "_".join(f"{k}-{v}" for k, v in variant.items()) or f"sae{index}")
        name = _NAME_UNSAFE.sub("_", name)
        if name in resolved:
            raise ConfigError(f"{where}.name", f"expected a name no other entry has, found '{name}' twice",
                              suggestion="give the entries distinct settings or a name: key")
        resolved[name] = merged
    return resolved


def _variant_settings(base: Mapping[str, Any], variant: Any, where: str) -> dict[str, Any]:
    """One entry's complete settings: the base's, less the keys its architecture does not read, and its own."""
    if not isinstance(variant, Mapping):
        raise ConfigError(where, f"expected a mapping of SAE settings, found {variant!r}")
    for key in variant:
        if key in SHARED_IN_ONE_PASS:
            raise ConfigError(f"{where}.{key}", "expected the same value for every SAE of one pass (it decides "
                                                "their batches or how the pass runs), found it set here",
                              suggestion=f"set sae.{key}, or sweep it with -m (separate runs)")
        if key not in _VARIANT_KEYS:
            raise ConfigError(f"{where}.{key}", f"expected an SAE setting ({one_of(_VARIANT_KEYS)})",
                              suggestion=did_you_mean(str(key), _VARIANT_KEYS))
    architecture = variant.get("architecture", base["architecture"])
    inherited = {k: v for k, v in base.items() if k != "variants"
                 and (k not in PER_ARCHITECTURE or architecture in PER_ARCHITECTURE[k][0])}
    try:
        return _one_sae(settings_of(SAEConfig, {**inherited, **{k: v for k, v in variant.items() if k != "name"}}))
    except ConfigError as error:
        key = f"{where}.{error.key}" if error.key.split("[")[0] in variant else error.key
        raise ConfigError(key, error.message, suggestion=error.suggestion) from None


def resolve_d_sae(params: Mapping[str, Any], d_in: int) -> int:
    if params.get("d_sae") is not None:
        return int(params["d_sae"])
    return int(params["expansion_factor"]) * d_in




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
    """A fresh SAELens training SAE for ``params`` (one SAE's settings, as ``sae_settings`` completes them)
    and activations of width ``d_in``."""
    from sae_lens.registry import get_sae_training_class
    from sae_lens.saes.sae import SAEMetadata

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
