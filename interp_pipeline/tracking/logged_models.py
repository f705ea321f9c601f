"""Models and SAEs a stage computes, logged as MLflow models so they can be registered.

A pyfunc model (tracking/pyfunc_model.py) around the files the stage cache's codec
writes, so what the registry serves is what the cache holds. Logging copies the
weights into the artifact store; ``tracking.max_model_mb`` caps that (toy models and
SAEs are a few MB; GPT-2 small is 500 MB), and a model over it is named in a
``logged_model.<output>.not_logged`` tag instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

MODEL_CODECS = ("hooked_transformer", "sae_lens_sae", "sae_lens_saes")
_ENTRY = Path(__file__).with_name("pyfunc_model.py")
_REQUIREMENTS = ("torch", "transformer_lens", "sae_lens", "safetensors", "numpy")


def model_codec(value: Any) -> str | None:
    """The codec name when ``value`` is a model or SAE(s) the stage cache can store, else None."""
    from interp_pipeline.storage.cache_codecs import codec_for

    try:
        name = codec_for(value).name
    except TypeError:
        return None
    return name if name in MODEL_CODECS else None


def size_mb(value: Any) -> float:
    """Parameters and buffers, in MB (10**6 bytes), of a module or a mapping of modules."""
    modules = value.values() if isinstance(value, Mapping) else [value]
    total = 0
    for module in modules:
        total += sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return total / 1e6


def _requirements() -> list[str]:
    found = []
    for name in _REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


@contextlib.contextmanager
def fluent_store(uri: str, experiment_id: str | None = None) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` (and ``experiment_id``) for a moment, then put it back.

    Model.log finds the store through the fluent API's URI, and the logged model's
    experiment through its active experiment (else "Default", whose artifacts land in
    ./mlruns). mlflow.set_tracking_uri also exports $MLFLOW_TRACKING_URI (for
    subprocesses); it is restored too, else the next run in this process (a sweep's next
    job) would follow the variable to another store. No public API sets the active
    experiment without creating or looking it up by name, hence the module attribute.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    previous, variable = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    previous_experiment = fluent._active_experiment_id
    mlflow.set_tracking_uri(uri)
    if experiment_id is not None:
        fluent._active_experiment_id = experiment_id
    try:
        yield
    finally:
        fluent._active_experiment_id = previous_experiment
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow draws a progress bar for copying a model's few files, and advises an input
    example (which it would run through the model to check): neither is worth a line in a log."""
    import warnings

    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(?s).*input example was not provided", category=UserWarning)
            yield
    finally:
        if previous is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous


def _signature(value: Any, codec: str) -> Any:
    """What predict takes and returns (given, so MLflow does not try to infer one and warn)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    if codec == "hooked_transformer":
        inputs = TensorSpec(np.dtype("int64"), (-1, -1))
        outputs = TensorSpec(np.dtype("float32"), (-1, -1, int(value.cfg.d_vocab)))
    else:
        sae = value if codec == "sae_lens_sae" else next(iter(value.values()))
        inputs = TensorSpec(np.dtype("float32"), (-1, int(sae.cfg.d_in)))
        outputs = TensorSpec(np.dtype("float32"), (-1, -1))  # widths may differ by SAE
    return ModelSignature(Schema([inputs]), Schema([outputs]))


def log_model(uri: str, experiment_id: str, run_id: str, name: str, value: Any, codec: str,
              saved: Path | None) -> Any:
    """Log ``value`` as the pyfunc model ``name`` of the run; ``saved`` is its codec's folder when already written.

    Returns MLflow's ModelInfo (``model_uri`` is ``models:/<model_id>``).
    """
    import mlflow
    from mlflow.models import Model

    from interp_pipeline.storage.cache_codecs import codec_named

    with tempfile.TemporaryDirectory(prefix="interp-model-") as scratch:
        if saved is None:
            saved = Path(scratch) / "weights"
            codec_named(codec).save(value, saved)
        with fluent_store(uri, experiment_id), _quiet():
            return Model.log(
                artifact_path=None, name=name, flavor=mlflow.pyfunc, run_id=run_id,
                python_model=str(_ENTRY), artifacts={"weights": str(saved)}, model_config={"codec": codec},
                signature=_signature(value, codec),
                # Listed, not inferred: inference loads the model in a subprocess (seconds).
                pip_requirements=_requirements(),
            )
