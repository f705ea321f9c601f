"""The train_transcoder stage's work: per-layer transcoders from an activation store (or streamed), one pass.

The data for layer L is the pair (MLP input, MLP output) at every token: two hooks of
the cache stage's store read in the same shuffled order (interp_pipeline.sae.data's
``from_store`` per hook, same seed, so row i of one is row i of the other: checked),
or computed from the model as training draws them (``from_model`` per hook). Every
layer's transcoder trains in one pass with SAELens's MultiSAETrainer through the SAE
stage's machinery (interp_pipeline.sae.multi: per-SAE trackers, checkpoints a killed
run resumes from, a NaN loss stops training), each reading its own layer's entry of
the batch. The result is a TranscoderSet of SAELens inference transcoders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.transcoders.config import SAE_LENS_TRAINING, TranscoderConfig, architecture_settings

_NOT_IN_CHECKPOINT_IDENTITY = ("log_every", "checkpoint_every", "device")


def hooks_for(settings: TranscoderConfig, layer: int) -> tuple[str, str]:
    return settings.hook_in.format(layer=layer), settings.hook_out.format(layer=layer)


def store_layers(settings: TranscoderConfig, hooks: list[str]) -> list[int]:
    """The layers to train: ``layers``, or every layer whose input and output hooks the store holds."""
    pattern = re.compile(re.escape(settings.hook_in).replace(re.escape("{layer}"), r"(\d+)"))
    found = sorted(int(m.group(1)) for h in hooks if (m := pattern.fullmatch(h)))
    layers = list(settings.layers) if settings.layers is not None else found
    if not layers:
        raise ConfigError("hook_in", f"expected the store to hold {settings.hook_in} for some layer "
                                                f"(cache.hooks), found hooks {hooks}")
    for layer in layers:
        for hook in hooks_for(settings, layer):
            if hook not in hooks:
                raise ConfigError("cache.hooks", f"expected the store to hold {hook} (transcoder layer {layer}), "
                                                 f"found {hooks}", suggestion="add it to cache.hooks", absolute=True)
    return layers


def check_store_hooks(settings: TranscoderConfig, inputs: Mapping[str, Any]) -> None:
    """Pre-flight: the store's hooks (from the cache stage's shape) hold every layer's input and output."""
    store = inputs.get("store")
    hooks = getattr(store, "hooks", None)
    if hooks is not None:
        store_layers(settings, list(hooks))


def check_transcoder_settings(settings: TranscoderConfig) -> None:
    """Pre-flight: the per-architecture keys (interp_pipeline.transcoders.config.architecture_settings)."""
    architecture_settings(settings)


def _sae_params(settings: TranscoderConfig, hook: str | None) -> dict[str, Any]:
    """Our settings in the shape interp_pipeline.sae's data and trainer-config helpers read."""
    return {"hook": hook, "architecture": SAE_LENS_TRAINING[settings.architecture], "d_in": None, "d_sae": None,
            "expansion_factor": settings.expansion_factor, **architecture_settings(settings),
            "matryoshka_widths": None, "lr": settings.lr, "lr_scheduler": "constant",
            "lr_warm_up_steps": 0, "lr_decay_steps": 0, "lr_end": None,
            "train_batch_size_tokens": settings.train_batch_size_tokens, "training_tokens": settings.training_tokens,
            "allow_fewer_tokens": settings.allow_fewer_tokens, "eval_tokens": settings.eval_tokens,
            "dead_feature_window": settings.dead_feature_window,
            "feature_sampling_window": settings.feature_sampling_window, "normalize_activations": "none",
            "buffer_chunks": settings.buffer_chunks, "dtype": "float32", "seed": settings.seed,
            "skip": settings.skip}


@dataclasses.dataclass
class PairedData:
    batches_from: Any  # position -> iterator of {name: [batch, 2 * d_model]}
    d_model: int
    holdout: dict[int, tuple[Any, Any]]  # layer -> (mlp_in, mlp_out) held-out rows
    total_tokens: int
    source: str


def paired_data(settings: TranscoderConfig, layers: list[int], *, store: Any = None, model: Any = None,
                tokens: Any = None) -> PairedData:
    """Every layer's (input, output) batches side by side, in one shuffled order."""
    import torch

    from interp_pipeline.sae import data

    per_hook = {}
    for layer in layers:
        for hook in hooks_for(settings, layer):
            params = _sae_params(settings, hook)
            per_hook[hook] = (data.from_store(store, params) if store is not None
                              else data.from_model(model, tokens, params))
    first = next(iter(per_hook.values()))
    if any(d.d_in != first.d_in for d in per_hook.values()):
        raise ConfigError("hook_out", "expected the MLP's input and output to have one width, found "
                          + ", ".join(f"{h}: {d.d_in}" for h, d in per_hook.items()))

    def batches_from(position: int) -> Iterator[dict[str, Any]]:
        streams = {hook: d.batches_from(position) for hook, d in per_hook.items()}
        while True:
            got = {hook: next(stream) for hook, stream in streams.items()}
            yield {f"layer_{layer}": torch.cat([got[hooks_for(settings, layer)[0]], got[hooks_for(settings, layer)[1]]],
                                               dim=1) for layer in layers}

    holdout = {layer: (per_hook[hooks_for(settings, layer)[0]].holdout, per_hook[hooks_for(settings, layer)[1]].holdout)
               for layer in layers}
    return PairedData(batches_from, first.d_in, holdout, first.total_tokens, first.source.split(",")[0])


def train_transcoders(settings: TranscoderConfig, *, store: Any = None, model: Any = None, tokens: Any = None,
                      tracker: Tracker = NULL_TRACKER, workdir: Path | None = None) -> Any:
    """One transcoder per layer, trained in one pass; returns a TranscoderSet (see the module doc)."""
    import torch

    from interp_pipeline.common.devices import resolve_device
    from interp_pipeline.sae.config import trainer_config
    from interp_pipeline.sae.data import open_store
    from interp_pipeline.sae.multi import train_many
    from interp_pipeline.transcoders.architectures import training_transcoder
    from interp_pipeline.transcoders.storage import TranscoderSet

    if (store is None) == (model is None) or (model is None) != (tokens is None):
        raise ConfigError("inputs", "expected either store (an activation store with both hooks of every layer) "
                                    "or model with tokens (streamed)")
    if store is not None:
        store = open_store(store)
        layers = store_layers(settings, list(store.hooks))
    else:
        layers = list(settings.layers) if settings.layers is not None else list(range(model.cfg.n_layers))
    data = paired_data(settings, layers, store=store, model=model, tokens=tokens)
    device = resolve_device(settings.device)
    names = {f"layer_{layer}": layer for layer in layers}
    built, configs = {}, {}
    for name, layer in names.items():
        torch.manual_seed(int(settings.seed) * 1009 + layer)
        params = _sae_params(settings, hooks_for(settings, layer)[0])
        built[name] = training_transcoder(params, data.d_model, hook=params["hook"], device=device)
        steps = -(-data.total_tokens // settings.train_batch_size_tokens)
        configs[name] = trainer_config(params, total_tokens=data.total_tokens, device=device,
                                       norm_batches=max(1, min(1000, steps)))
    identity = {**{k: v for k, v in dataclasses.asdict(settings).items() if k not in _NOT_IN_CHECKPOINT_IDENTITY},
                "layers": layers, "d_model": data.d_model, "source": data.source, "total_tokens": data.total_tokens}
    tracker.set_tags({"transcoder.source": data.source, "transcoder.architecture": settings.architecture})
    started = time.perf_counter()
    with contextlib.ExitStack() as children:
        trackers = {name: children.enter_context(tracker.child(name, {"transcoder.layer": str(layer)}))
                    for name, layer in names.items()}
        fitted = train_many(built, data.batches_from, configs, trackers=trackers, log_every=settings.log_every,
                            desc=f"training {len(names)} transcoders in one pass", workdir=workdir,
                            checkpoint_every=settings.checkpoint_every, identity=identity,
                            hooks={name: name for name in names})
        elapsed = time.perf_counter() - started
        result = _finish(settings, built, fitted, names, data, trackers, tracker)
    steps_here = fitted.n_training_steps - fitted.resumed_from_step
    if fitted.resumed_from_step:
        tracker.log_metrics({"resumed_from_step": float(fitted.resumed_from_step)})
    tracker.log_metrics({"steps": float(fitted.n_training_steps), "layers": float(len(layers)),
                         "tokens_per_s": steps_here * settings.train_batch_size_tokens / elapsed if elapsed else 0.0})
    return TranscoderSet(result)


def _finish(settings: TranscoderConfig, built: Mapping[str, Any], fitted: Any, names: Mapping[str, int],
            data: PairedData, trackers: Mapping[str, Tracker], tracker: Tracker) -> dict[int, Any]:
    """The inference transcoders, each evaluated on its layer's held-out rows (metrics per layer and mean)."""
    from interp_pipeline.transcoders.architectures import to_inference
    from interp_pipeline.transcoders.evaluation import reconstruction

    result, per_layer = {}, {}
    for name, layer in names.items():
        hook_in, hook_out = hooks_for(settings, layer)
        result[layer] = to_inference(built[name], settings.architecture, hook_in=hook_in, hook_out=hook_out,
                                     layer=layer)
        x, y = data.holdout[layer]
        metrics = {**reconstruction(result[layer], x, y),
                   "dead_features": float(fitted.trainers[name].dead_neurons.sum())}
        trackers[name].log_metrics(metrics)
        per_layer[layer] = metrics
        tracker.log_metrics({f"{name}/{k}": v for k, v in metrics.items()})
    keys = per_layer[next(iter(per_layer))].keys()
    tracker.log_metrics({f"mean/{k}": sum(m[k] for m in per_layer.values()) / len(per_layer) for k in keys})
    return result
