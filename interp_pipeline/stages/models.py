"""The load-model stage: one config group, five sources, one HookedTransformer-like model out.

Only trained models are stored in the stage cache (safetensors + config, see
interp_pipeline.models.storage); the others are cheaper to load again from their
source than to copy, and their cache key still pins everything downstream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.devices import resolve_device
from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

DTYPES = ("float32", "float16", "bfloat16", "float64")
# The keys each source reads; setting another source's key is a mistake worth reporting.
SOURCE_KEYS = {
    "tl": {"name", "revision"},
    "hf": {"name_or_path", "revision"},
    "config": {"cfg"},
    "trained": {"cfg", "train"},
    "saved": {"path"},
}
SOURCE_SPECIFIC = set().union(*SOURCE_KEYS.values())


def _check_hooked_transformer_fields(cfg: dict[str, Any]) -> None:
    from transformer_lens import HookedTransformerConfig

    fields = [f for f in dataclasses.fields(HookedTransformerConfig) if f.init]
    allowed = {f.name for f in fields}
    for key in cfg:
        if key in ("seed", "device", "dtype"):
            raise ConfigError(f"cfg.{key}", f"is set by model.{key}, not inside model.cfg")
        if key not in allowed:
            raise ConfigError(f"cfg.{key}", f"expected a HookedTransformerConfig field, found '{key}'",
                              suggestion=did_you_mean(key, allowed))


def _check_model_params(params: dict[str, Any]) -> None:
    source = params.get("source")
    if source not in SOURCE_KEYS:
        raise ConfigError("source", f"expected one of {one_of(SOURCE_KEYS)}, found '{source}'",
                          suggestion=did_you_mean(str(source), SOURCE_KEYS))
    for key in sorted(SOURCE_SPECIFIC - SOURCE_KEYS[source]):
        if params.get(key) not in (None, {}, ""):
            users = [s for s, keys in SOURCE_KEYS.items() if key in keys]
            raise ConfigError(key, f"is read by source {' / '.join(users)}, not by source '{source}'")
    if params.get("dtype", "float32") not in DTYPES:
        raise ConfigError("dtype", f"expected one of {one_of(DTYPES)}, found '{params.get('dtype')}'",
                          suggestion=did_you_mean(str(params.get("dtype")), DTYPES))
    if source in ("tl", "hf"):
        from interp_pipeline.models.hub import check_available

        key = "name" if source == "tl" else "name_or_path"
        if not params.get(key):
            raise ConfigError(key, f"expected a model {'name' if source == 'tl' else 'id or directory'}, found none")
        check_available(source, params[key], params.get("revision"))
    elif source == "saved":
        path = params.get("path")
        if not path or not (Path(path).expanduser() / "config.json").is_file():
            raise ConfigError("path", f"expected a directory saved by interp_pipeline (with config.json), found '{path}'")
    else:
        from interp_pipeline.models.shape import check_config_types

        _check_hooked_transformer_fields(params.get("cfg", {}))
        check_config_types(params.get("cfg", {}))
        if source == "trained":
            _check_training(params)
        else:
            _check_required(params.get("cfg", {}))


def _check_required(cfg: dict[str, Any], fixed: dict[str, Any] | None = None) -> None:
    from transformer_lens import HookedTransformerConfig

    for f in dataclasses.fields(HookedTransformerConfig):
        required = f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in cfg and f.name not in (fixed or {}):
            raise ConfigError(f"cfg.{f.name}", "expected a value (HookedTransformerConfig requires it), found none")


def _check_training(params: dict[str, Any]) -> None:
    from interp_pipeline.tasks.base import make_task

    train = params.get("train")
    if not train:
        raise ConfigError("train", "expected a training config (task, steps, lr, ...) for source 'trained'")
    task = make_task(train["task"], key="train.task")
    fixed = task.model_config()
    for key, value in fixed.items():
        if key in params.get("cfg", {}) and params["cfg"][key] != value:
            raise ConfigError(f"cfg.{key}", f"is fixed by task '{task.name}' to {value!r}, found {params['cfg'][key]!r}")
    _check_required(params.get("cfg", {}), fixed)


def _build(cfg: dict[str, Any], seed: int, device: str, dtype: str, tokenizer: Any = None) -> HookedTransformer:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    config = HookedTransformerConfig(**cfg, seed=seed, device=resolve_device(device), dtype=getattr(torch, dtype))
    model = HookedTransformer(config, tokenizer=tokenizer)
    model.eval()
    return model


def _trained(cfg, train, seed, device, dtype, tracker, workdir) -> HookedTransformer:
    from interp_pipeline.tasks.base import make_task
    from interp_pipeline.training.trainer import TrainSettings, train as train_model

    settings = dict(train)
    task = make_task(settings.pop("task"), key="train.task")
    model = _build({**cfg, **task.model_config()}, seed, device, dtype, tokenizer=task.tokenizer())
    train_model(model, task, TrainSettings(**settings), seed=seed, tracker=tracker, workdir=workdir)
    return model


def _shape(params: dict[str, Any], inputs: Any) -> Any:
    from interp_pipeline.models.shape import shape_of_params

    return shape_of_params(params)


def _metrics(params: dict[str, Any]) -> tuple[str, ...]:
    trained = ("train/loss", "lr", "eval/*", "steps_trained", "stopped_early_at", "resumed_from_step")
    return ("n_params", *(trained if params.get("source") == "trained" else ()))


@stage("load_model", outputs=("model",), cache=lambda params: params.get("source") == "trained",
       preflight=_check_model_params, shape=_shape, metrics=_metrics, version=2,
       summary=("n_params", "eval/*", "steps_trained"))
def load_model(
    source: str,
    seed: int,
    cfg: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    name: str | None = None,
    name_or_path: str | None = None,
    path: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    compatibility_mode: bool = True,
    tracker: Tracker = NULL_TRACKER,
    workdir: Path | None = None,
) -> Any:
    """A model from ``source`` (see interp_pipeline.config.schema.ModelConfig), in eval mode.

    Logs the model's identity (source, name, revision or checksum, parameter count,
    dtype, device) as tags and ``n_params`` as a metric.
    """
    if source == "tl":
        from interp_pipeline.models.hub import load_transformer_lens

        model = load_transformer_lens(
            name, revision=revision, device=resolve_device(device), dtype=dtype, fold_ln=fold_ln,
            center_writing_weights=center_writing_weights, center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )
    elif source == "hf":
        from interp_pipeline.models.hub import load_hugging_face

        model = load_hugging_face(name_or_path, revision=revision, device=resolve_device(device), dtype=dtype,
                                  compatibility_mode=compatibility_mode)
    elif source == "saved":
        from interp_pipeline.models.storage import load_model_dir

        model = load_model_dir(Path(path).expanduser(), device=resolve_device(device))
    elif source == "trained":
        model = _trained(cfg or {}, train or {}, seed, device, dtype, tracker, workdir)
    else:
        model = _build(cfg or {}, seed, device, dtype)

    from interp_pipeline.models.hub import model_identity

    identity = model_identity(model, source=source, name=name or name_or_path or path, revision=revision)
    tracker.set_tags({f"model.{k}": v for k, v in identity.items()})
    tracker.log_metrics({"n_params": float(identity["n_params"])})
    return model
