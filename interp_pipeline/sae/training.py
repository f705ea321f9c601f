"""The train_sae stage's work: from its settings (SAEConfig) and one data input to trained inference SAEs.

The data is an activation store (the cache stage's ``store``), an ``activations``
tensor, ``synthetic`` toy data, or a ``model`` with ``tokens`` whose activations are
computed as training draws them (interp_pipeline.sae.data). One SAE trains with
SAELens's SAETrainer (interp_pipeline.sae.trainer: metrics every ``log_every`` steps
under SAELens's own names), is evaluated on the held-out rows and comes back as an
inference SAE, which the stage cache keeps as a directory ``SAE.load_from_disk`` reads
(interp_pipeline.sae.storage).

Every ``checkpoint_every`` steps it checkpoints into the runner's ``workdir`` for its
cache key (interp_pipeline.sae.checkpoints); after a crash or a kill -9 the same
command resumes from the newest checkpoint and ends with the same SAE.

With ``variants`` (a list of overrides: ``[{l1_coefficient: 1}, {l1_coefficient: 5}]``)
one SAE per entry trains in one pass over the data (interp_pipeline.sae.multi): each
batch is read once and given to every SAE, each SAE logs to its own child run of the
tracker, and the result is ``{name: SAE}``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.sae.config import SAEConfig, resolve_d_sae, resolve_variants, sae_settings
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.sae.data import TrainingData

# Settings that change how a run goes, not what it trains: a checkpoint written under other
# values of these is resumed; under other values of anything else it is refused.
_NOT_IN_CHECKPOINT_IDENTITY = ("log_every", "checkpoint_every", "device")


def trained_on(settings: SAEConfig, inputs: Mapping[str, Any]) -> tuple[str, int] | None:
    """Pre-flight: the hook and width the SAE will train on, from the store's or the model's shape
    (None when neither is known); checks the token budget against the store's rows, and ``d_in``."""
    import numpy as np

    from interp_pipeline.sae.data import training_budget

    params = sae_settings(settings)
    store, model = inputs.get("store"), inputs.get("model")
    if store is not None:
        hook, width = store.hook_width("hook", params["hook"])
        if store.max_rows is not None:
            training_budget(params, store.max_rows, f"the activation store (at most {store.max_rows} rows)")
    elif model is not None and params["hook"] is not None:
        hook, width = params["hook"], tuple(model.token_width("hook", params["hook"]))
    else:
        return None
    d_in = int(np.prod(width))
    if params["d_in"] is not None and int(params["d_in"]) != d_in:
        raise ConfigError("d_in", f"expected the width of the activations ({d_in} for {hook}), found {params['d_in']}")
    return hook, d_in


def check_training(settings: SAEConfig) -> None:
    """Pre-flight of the settings alone, and with ranks (torchrun) that they split over them."""
    from interp_pipeline.sae.config import check_sae_params
    from interp_pipeline.sae.ranks import check_ranks

    check_sae_params(settings)
    check_ranks(sae_settings(settings))


def check_training_shapes(settings: SAEConfig, inputs: Mapping[str, Any]) -> None:
    from interp_pipeline.sae.ranks import check_rows

    trained_on(settings, inputs)
    store = inputs.get("store")
    check_rows(getattr(store, "n_sequences", None))


def training_shape(settings: SAEConfig, inputs: Mapping[str, Any]) -> Any:
    """The SAE's shape (an SAEShape), or with ``variants`` each one's by name; None when the data's is unknown."""
    from interp_pipeline.pipeline.shapes import SAEShape

    found = trained_on(settings, inputs)
    if found is None:
        return None
    hook, d_in = found

    def shape(one: Mapping[str, Any]) -> SAEShape:
        return SAEShape(d_in, resolve_d_sae(one, d_in), hook)

    params = sae_settings(settings)
    if params["variants"]:
        return {name: shape(one) for name, one in resolve_variants(params).items()}
    return shape(params)


def train_saes(settings: SAEConfig, *, store: Any = None, activations: Tensor | None = None,
               synthetic: Mapping[str, Tensor] | None = None, model: Any = None, tokens: Tensor | None = None,
               tracker: Tracker = NULL_TRACKER, workdir: Path | None = None) -> Any:
    """Train one SAE (or, with ``variants``, one per entry in one pass) on the one data input given;
    returns the inference SAE (or them by name). See the module doc."""
    from interp_pipeline.common.devices import resolve_device
    from interp_pipeline.common.distributed import current
    from interp_pipeline.sae import trainer
    from interp_pipeline.sae.ranks import rank_share

    params = sae_settings(settings)
    ranks = current()
    # Under torchrun each rank trains on its share of every global batch (interp_pipeline.sae.ranks).
    source = rank_share(_training_data(params, store=store, activations=activations, synthetic=synthetic,
                                       model=model, tokens=tokens), ranks)
    device = resolve_device(params["device"])
    identity = {**{key: value for key, value in params.items() if key not in _NOT_IN_CHECKPOINT_IDENTITY},
                "d_in": source.d_in, "source": source.source, "train_rows": source.train_rows,
                "total_tokens": source.total_tokens, "sae_lens": _sae_lens_version()}
    workdir = None if workdir is None else Path(workdir)
    tracker.set_tags({"sae.source": source.source, **({"sae.hook": source.hook} if source.hook else {})})
    if params["variants"]:
        return _train_in_one_pass(source, params, device, identity, tracker, workdir)

    sae, cfg = _fresh_sae(params, source, device)
    tracker.set_tags({"sae.architecture": params["architecture"]})
    started = time.perf_counter()
    fitted = trainer.train(sae, source.batches_from, cfg, tracker=tracker, log_every=params["log_every"],
                           desc=f"training {params['architecture']} SAE", workdir=workdir,
                           checkpoint_every=params["checkpoint_every"], identity=identity, ranks=ranks)
    if not ranks.is_main:  # rank 0 evaluates, logs and stores the SAE; this rank's copy is the same
        return sae
    return _finish(sae, fitted, source, time.perf_counter() - started, device, tracker)[0]


def _training_data(params: Mapping[str, Any], **inputs: Any) -> TrainingData:
    """The TrainingData (interp_pipeline.sae.data) of the one data input given."""
    from interp_pipeline.sae import data

    given = [name for name in ("store", "activations", "synthetic", "model") if inputs[name] is not None]
    if len(given) != 1 or (inputs["model"] is None) != (inputs["tokens"] is None):
        found = " and ".join(given + (["tokens"] if inputs["tokens"] is not None else [])) or "none"
        raise ConfigError("inputs", "expected exactly one of the inputs store (an activation store), activations "
                                    "(a tensor), synthetic (toy_superposition), and model with tokens (streamed "
                                    f"from the model), found {found}")
    if inputs["store"] is not None:
        return data.from_store(inputs["store"], params)
    if inputs["model"] is not None:
        return data.from_model(inputs["model"], inputs["tokens"], params)
    if inputs["activations"] is not None:
        return data.from_tensor(inputs["activations"], params)
    return data.from_synthetic(inputs["synthetic"], params)


def _train_in_one_pass(source: TrainingData, params: Mapping[str, Any], device: str, identity: Mapping[str, Any],
                       tracker: Tracker, workdir: Path | None) -> dict[str, Any]:
    """One SAE per ``variants`` entry, trained in one pass over the data; each logs to its own child run."""
    from interp_pipeline.common.distributed import current
    from interp_pipeline.sae.multi import train_many

    named = resolve_variants(params)
    built = {name: _fresh_sae(variant, source, device) for name, variant in named.items()}
    with contextlib.ExitStack() as children:
        trackers = {}
        for name, variant in named.items():
            trackers[name] = children.enter_context(tracker.child(name, {"sae.architecture": variant["architecture"]}))
            trackers[name].log_params({k: v for k, v in variant.items() if k != "variants"})
        started = time.perf_counter()
        fitted = train_many({name: sae for name, (sae, _) in built.items()}, source.batches_from,
                            {name: cfg for name, (_, cfg) in built.items()}, trackers=trackers,
                            log_every=int(params["log_every"]), desc=f"training {len(named)} SAEs in one pass",
                            workdir=workdir, checkpoint_every=int(params["checkpoint_every"]), identity=identity,
                            ranks=current())
        elapsed = time.perf_counter() - started
        if not current().is_main:  # rank 0 evaluates, logs and stores the SAEs
            return {name: sae for name, (sae, _) in built.items()}
        saes = {}
        for name, (sae, _) in built.items():
            saes[name], final = _finish(sae, fitted.trainers[name], source, elapsed, device, trackers[name])
            # The stage's own run gets each SAE's results too, under its name (a cached stage shows only these).
            tracker.log_metrics({f"{name}/{metric}": value for metric, value in final.items()
                                 if metric.startswith(("eval/", "final/", "dead_features"))})
    steps_here = fitted.n_training_steps - fitted.resumed_from_step
    if fitted.resumed_from_step:
        tracker.log_metrics({"resumed_from_step": float(fitted.resumed_from_step)})
    tracker.log_metrics({"saes": float(len(saes)), "steps": float(fitted.n_training_steps),
                         "steps_per_s": steps_here / elapsed if elapsed > 0 else 0.0,
                         "tokens_per_s": steps_here * int(params["train_batch_size_tokens"]) / elapsed
                         if elapsed > 0 else 0.0})
    return saes


def _fresh_sae(params: Mapping[str, Any], source: TrainingData, device: str) -> tuple[Any, Any]:
    """A new training SAE (initialised from ``seed``, as a separate run would) and its SAETrainerConfig."""
    import torch

    from interp_pipeline.sae.config import trainer_config, training_sae

    torch.manual_seed(int(params["seed"]))
    sae = training_sae(params, source.d_in, hook=source.hook, device=device)
    steps = -(-source.total_tokens // int(params["train_batch_size_tokens"]))
    cfg = trainer_config(params, total_tokens=source.total_tokens, device=device,
                         norm_batches=max(1, min(1000, steps)))
    return sae, cfg


def _finish(sae: Any, fitted: Any, source: TrainingData, elapsed: float, device: str,
            tracker: Tracker) -> tuple[Any, dict[str, float]]:
    """The inference SAE (logged as an artifact) and its final and held-out metrics (logged too)."""
    from interp_pipeline.sae import trainer
    from interp_pipeline.sae.storage import to_inference

    steps_here = fitted.n_training_steps - fitted.resumed_from_step
    tokens_here = steps_here * fitted.cfg.train_batch_size_samples
    with tempfile.TemporaryDirectory() as scratch:
        inference = to_inference(sae, Path(scratch) / "sae", device=device)
        # The run carries the SAE itself (SAE.load_from_disk reads the downloaded folder).
        tracker.log_files(Path(scratch) / "sae", "sae")
    final = {
        "steps": float(fitted.n_training_steps),
        "tokens_trained": float(fitted.n_training_samples),
        "steps_per_s": steps_here / elapsed if elapsed > 0 else 0.0,
        "tokens_per_s": tokens_here / elapsed if elapsed > 0 else 0.0,
        "d_in": float(source.d_in),
        "d_sae": float(sae.cfg.d_sae),
        "dead_features": float(fitted.dead_neurons.sum()),
        **{f"final/{name.split('/', 1)[-1]}": value for name, value in fitted.last_metrics.items()
           if name.startswith(("losses/", "metrics/"))},
        **trainer.evaluate(inference, source.holdout),
    }
    tracker.log_metrics(final)
    tracker.log_dict(inference.cfg.to_dict(), "sae_cfg")
    return inference, final


def _sae_lens_version() -> str:
    from sae_lens import __version__

    return str(__version__)
