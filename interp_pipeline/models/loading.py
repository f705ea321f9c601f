"""A model from its settings (interp_pipeline.models.config.ModelConfig): the load_model stage's work.

``check_model_settings`` is its pre-flight: what no field of the schema can say alone (a key
that another source reads, a hub model that cannot be had here, a model config field a task
fixes otherwise). ``load`` builds, trains or loads the model and logs its
identity. Only trained models are stored in the stage cache (interp_pipeline.models.storage);
the others are cheaper to load again from their source than to copy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.devices import resolve_device
from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.models.config import SOURCE_KEYS, ModelConfig
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.training.config import TrainConfig

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

_SOURCE_SPECIFIC = sorted({key for keys in SOURCE_KEYS.values() for key in keys})
# What a config field set in model.cfg would fight with.
_SET_OUTSIDE_CFG = ("seed", "device", "dtype")


def check_model_settings(settings: ModelConfig) -> None:
    """Pre-flight: the keys ``settings.source`` reads are given, and no other source's are."""
    source = settings.source
    for key in _SOURCE_SPECIFIC:
        if key not in SOURCE_KEYS[source] and getattr(settings, key) not in (None, {}, ""):
            users = [s for s, keys in SOURCE_KEYS.items() if key in keys]
            raise ConfigError(key, f"is read by source {' / '.join(users)}, not by source '{source}'")
    if source in ("tl", "hf"):
        from interp_pipeline.models.hub import check_available

        _check_devices(settings.n_devices)
        key = "name" if source == "tl" else "name_or_path"
        name = getattr(settings, key)
        if not name:
            raise ConfigError(key, f"expected a model {'name' if source == 'tl' else 'id or directory'}, found none")
        check_available(source, name, settings.revision)
    elif source == "saved":
        path = settings.path
        if not path or not (Path(path).expanduser() / "config.json").is_file():
            raise ConfigError("path", f"expected a directory saved by interp_pipeline (with config.json), found '{path}'")
    else:
        from interp_pipeline.models.shape import check_config_types

        _check_config_fields(settings.cfg)
        check_config_types(settings.cfg)
        if source == "trained":
            _check_training(settings)
        else:
            _check_required(settings.cfg)


def _check_devices(n_devices: int | None) -> None:
    """``n_devices`` GPUs must be visible (TransformerLens would fail after downloading the weights)."""
    if n_devices is None or n_devices == 1:
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_devices > visible:
        raise ConfigError("n_devices", f"expected at most the {visible} GPUs visible here, found {n_devices}",
                          suggestion="run on a machine with that many GPUs (CUDA_VISIBLE_DEVICES), or unset it")


def _check_config_fields(cfg: dict[str, Any]) -> None:
    from interp_pipeline.models.from_config import config_class, field_names

    allowed, cls = field_names(), config_class().__name__
    for key in cfg:
        if key in _SET_OUTSIDE_CFG:
            raise ConfigError(f"cfg.{key}", f"is set by model.{key}, not inside model.cfg")
        if key not in allowed:
            raise ConfigError(f"cfg.{key}", f"expected a {cls} field, found '{key}'",
                              suggestion=did_you_mean(key, allowed))


def _check_required(cfg: dict[str, Any], fixed: dict[str, Any] | None = None) -> None:
    from interp_pipeline.models.from_config import config_class, required_fields

    for name in required_fields():
        if name not in cfg and name not in (fixed or {}):
            raise ConfigError(f"cfg.{name}", f"expected a value ({config_class().__name__} requires it), found none")


def _check_training(settings: ModelConfig) -> None:
    from interp_pipeline.tasks.base import make_task

    task = make_task(_train_settings(settings).task, key="train.task")
    fixed = task.model_config()
    for key, value in fixed.items():
        if key in settings.cfg and settings.cfg[key] != value:
            raise ConfigError(f"cfg.{key}", f"is fixed by task '{task.name}' to {value!r}, found {settings.cfg[key]!r}")
    _check_required(settings.cfg, fixed)


def _train_settings(settings: ModelConfig) -> TrainConfig:
    if settings.train is None:
        raise ConfigError("train", "expected a training config (task, steps, lr, ...) for source 'trained'")
    return settings.train


def load(settings: ModelConfig, tracker: Tracker = NULL_TRACKER, workdir: Path | None = None) -> HookedTransformer:
    """The model ``settings`` describe, in eval mode; its identity (source, name, revision or checksum,
    parameter count, dtype, device) logged as tags and ``n_params`` as a metric."""
    device = resolve_device(settings.device)
    if settings.source == "tl":
        from interp_pipeline.models.hub import load_transformer_lens

        model = load_transformer_lens(
            settings.name, revision=settings.revision, device=device, dtype=settings.dtype, fold_ln=settings.fold_ln,
            center_writing_weights=settings.center_writing_weights, center_unembed=settings.center_unembed,
            fold_value_biases=settings.fold_value_biases, n_devices=settings.n_devices,
        )
    elif settings.source == "hf":
        from interp_pipeline.models.hub import load_hugging_face

        model = load_hugging_face(settings.name_or_path, revision=settings.revision, device=device,
                                  dtype=settings.dtype, compatibility_mode=settings.compatibility_mode,
                                  n_devices=settings.n_devices)
    elif settings.source == "saved":
        from interp_pipeline.models.storage import load_model_dir

        model = load_model_dir(Path(settings.path).expanduser(), device=device)
    elif settings.source == "trained":
        model = _trained(settings, tracker, workdir)
    else:
        model = _build(settings.cfg, settings)

    from interp_pipeline.models.hub import model_identity

    identity = model_identity(model, source=settings.source,
                              name=settings.name or settings.name_or_path or settings.path, revision=settings.revision)
    tracker.set_tags({f"model.{k}": v for k, v in identity.items()})
    tracker.log_metrics({"n_params": float(identity["n_params"])})
    return model


def _build(cfg: dict[str, Any], settings: ModelConfig, tokenizer: Any = None) -> HookedTransformer:
    """A HookedTransformer on TransformerLens 3, a boot_native TransformerBridge on 4 (models.from_config)."""
    import torch

    from interp_pipeline.models.from_config import build, make_config

    config = make_config(cfg, seed=settings.seed, device=resolve_device(settings.device),
                         dtype=getattr(torch, settings.dtype))
    return build(config, tokenizer=tokenizer)


def _trained(settings: ModelConfig, tracker: Tracker, workdir: Path | None) -> HookedTransformer:
    from interp_pipeline.tasks.base import make_task
    from interp_pipeline.training.trainer import train

    task = make_task(_train_settings(settings).task, key="train.task")
    model = _build({**settings.cfg, **task.model_config()}, settings, tokenizer=task.tokenizer())
    train(model, task, _train_settings(settings), seed=settings.seed, tracker=tracker, workdir=workdir)
    return model
