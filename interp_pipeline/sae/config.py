"""The SAE config groups' schemas; the ``sae`` group checked against its own and mapped onto SAELens's configs.

Every setting's name, type, range, choices and default is written once, in the
dataclasses below: SAEConfig (train_sae), SAEEvalConfig (evaluate_sae),
SAESourceConfig (load_sae), and the toy superposition stages' two (sae_features's is
SAEFeaturesConfig, in interp_pipeline.analysis.config). ``sae_settings`` checks a
mapping (or an SAEConfig) against SAEConfig, whether Hydra composed it or it came as
train_sae's keyword arguments from a notebook, and completes it. Keys only some architectures read
(``k``, ``l1_coefficient`` ...) are None unless given, and refused by the others,
as SAELens's per-architecture configs refuse them; left out, they take the default
of the architecture that reads them.

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
from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import SI

from interp_pipeline.config.fields import at_least, choice, fraction, positive, used_by
from interp_pipeline.config.settings import settings_of
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

L1_PENALISED = ("standard", "gated")
TOP_K = ("topk", "batchtopk", "matryoshka_batchtopk")
# SAELens's training architectures (sae_lens.registry) that this module maps our keys onto.
SAE_ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk")
DEVICES = ("auto", "cpu", "cuda", "mps")  # auto: cuda when present, else cpu


@dataclass
class SAEConfig:
    """Training one SAE with SAELens (the train_sae stage); an architecture refuses another's keys (``used_by``)."""

    hook: Optional[str] = None  # which hook of the store; None: the store's only one
    architecture: str = choice("standard", SAE_ARCHITECTURES)
    d_in: Optional[int] = positive(None)  # None: the hook's width; given, it must match it
    d_sae: Optional[int] = positive(None)  # None: expansion_factor * d_in
    expansion_factor: Optional[int] = positive(8)
    l1_coefficient: Optional[float] = used_by(L1_PENALISED, at_least(0, 5.0))
    l1_warm_up_steps: Optional[int] = used_by(L1_PENALISED + ("jumprelu",), at_least(0, 0))  # jumprelu: its l0's
    l0_coefficient: Optional[float] = used_by(("jumprelu",), at_least(0, 1.0))
    k: Optional[int] = used_by(TOP_K, positive(32))  # topk: per token; the batch ones: mean per token
    # None: d_sae/8, d_sae/4, d_sae/2, d_sae
    matryoshka_widths: Optional[List[int]] = used_by(("matryoshka_batchtopk",), field(default=None))
    lr: float = positive(3e-4)
    lr_scheduler: str = choice("constant", ("constant", "cosineannealing", "cosineannealingwarmrestarts"))
    lr_warm_up_steps: int = at_least(0, 0)
    lr_decay_steps: int = at_least(0, 0)
    lr_end: Optional[float] = None  # cosine schedules; None: lr / 10
    train_batch_size_tokens: int = positive(4096)
    training_tokens: int = positive(2_000_000)
    allow_fewer_tokens: bool = False  # train on what the store holds when it holds less
    eval_tokens: int = at_least(0, 4096)  # the store's last rows, held out for the final evaluation
    dead_feature_window: int = positive(1000)  # steps without firing before a latent counts as dead
    feature_sampling_window: int = positive(2000)
    normalize_activations: str = choice("none", ("none", "expected_average_only_in", "layer_norm"))
    log_every: int = positive(50)  # steps between metric logs
    checkpoint_every: int = at_least(0, 1000)  # steps between checkpoints a killed run resumes from; 0: none
    buffer_chunks: int = positive(8)  # store chunks shuffled together
    device: str = choice("auto", DEVICES)
    dtype: str = choice("float32", ("float32", "bfloat16", "float16"))
    seed: int = SI("${seed}")
    # SAEs to train together in one pass, each entry overriding keys above (not those that
    # decide the batches): [{l1_coefficient: 1}, {architecture: topk, k: 16}]; [] trains one.
    variants: List[Any] = field(default_factory=list)


@dataclass
class SAEEvalConfig:
    """Evaluating an SAE on held-out sequences with SAELens's run_evals (the evaluate_sae stage)."""

    hook: Optional[str] = None  # where to splice the SAE in; None: the hook it was trained on
    batch_size_prompts: int = positive(16)  # sequences per forward pass
    max_sequences: Optional[int] = positive(None)  # None: every held-out sequence
    # true (the tokenizer's BOS/EOS/PAD, left out as SAELens does), false, or a list of token ids
    exclude_special_tokens: Any = True
    dense_threshold: float = fraction(0.1, open_below=True)  # a latent firing on more than this fraction of tokens counts as dense
    compute_kl: bool = True
    compute_ce_loss: bool = True


@dataclass
class SAESourceConfig:
    """An SAE to load (the load_sae stage): SAELens's release + sae_id, or a directory saved by SAELens."""

    release: Optional[str] = None  # a release in sae_lens/pretrained_saes.yaml, e.g. gpt2-small-res-jb
    sae_id: Optional[str] = None  # an SAE of that release, e.g. blocks.8.hook_resid_pre
    path: Optional[str] = None  # instead: a directory with cfg.json + sae_weights.safetensors
    device: str = choice("auto", DEVICES)
    dtype: str = choice("float32", ("float32", "bfloat16", "float16", "float64"))
    fold_W_dec_norm: bool = False


@dataclass
class ToySuperpositionConfig:
    """Known features in superposition (the toy_superposition stage, interp_pipeline.sae.toy).

    Sharkey, Braun and Millidge 2022 ("Taking features out of superposition with sparse
    autoencoders"): 512 random unit-norm features in a 256-dimensional space, about 5 active at a time.
    """

    n_features: int = positive(512)
    d: int = positive(256)  # the space's dimensions
    avg_active: float = positive(5.0)  # features firing per sample, on average; at most n_features
    magnitude_mean: float = 1.0
    magnitude_std: float = at_least(0, 0.0)
    seed: int = SI("${seed}")


@dataclass
class FeatureRecoveryConfig:
    """How well an SAE's decoder recovers known features (the sae_feature_recovery stage)."""

    threshold: float = fraction(0.9)  # a feature counts as recovered when some decoder row is this parallel to it


ARCHITECTURES = SAE_ARCHITECTURES
SETTINGS = tuple(f.name for f in dataclasses.fields(SAEConfig))
# {key: (the architectures that read it, its default for them)}, from the schema's ``used_by``.
PER_ARCHITECTURE: dict[str, tuple[tuple[str, ...], Any]] = {
    f.name: (f.metadata["architectures"], f.metadata["architecture_default"])
    for f in dataclasses.fields(SAEConfig) if "architectures" in f.metadata}


def check_sae_params(settings: SAEConfig | Mapping[str, Any]) -> None:
    """Everything checkable before the activations exist (pre-flight); keys relative to ``sae``."""
    sae_settings(settings)


def sae_settings(params: SAEConfig | Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against SAEConfig and completed: one SAE's settings, or with ``variants``
    the base each entry overrides (every entry is checked too). ConfigError keys are relative to ``sae``."""
    full = settings_of(SAEConfig, dataclasses.asdict(params) if isinstance(params, SAEConfig) else params)
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
