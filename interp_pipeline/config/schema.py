"""Schemas for every config group, so Hydra rejects unknown keys and wrong types at compose time.

Each group of ``conf/`` has one dataclass here; the top-level :class:`ExperimentConfig`
ties them together and is registered as ``config_schema``, which ``conf/config.yaml``
names first in its defaults list. Groups a pipeline does not use stay ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, SI


@dataclass
class PathsConfig:
    # Absolute by construction (see interp_pipeline.paths.default_outputs_dir).
    outputs: str = SI("${interp.outputs_dir:}")


@dataclass
class RunnerConfig:
    force: bool = False  # recompute every stage, ignoring the stage cache
    from_stage: Optional[str] = None  # recompute this stage and everything downstream of it
    cache_dir: str = SI("${paths.outputs}/cache")
    plugins: List[str] = field(default_factory=list)  # modules to import that register more stages


@dataclass
class TrackingConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI, else sqlite:///<paths.outputs>/mlflow.db
    uri: Optional[str] = None
    # None: the name of the experiment config (+experiment=NAME)
    experiment_name: Optional[str] = None


@dataclass
class ModelConfig:
    # How the model is had; "config": a HookedTransformer built from `cfg`, randomly initialised.
    source: str = "config"
    cfg: Dict[str, Any] = field(default_factory=dict)  # HookedTransformerConfig fields
    seed: int = SI("${seed}")
    device: str = "auto"  # auto: cuda when present, else cpu
    dtype: str = "float32"


@dataclass
class RandomTokensConfig:
    n_sequences: int = 64
    seq_len: int = 32
    d_vocab: int = MISSING
    seed: int = SI("${seed}")


@dataclass
class ActivationStatsConfig:
    hooks: List[str] = field(default_factory=lambda: ["hook_embed", "blocks.0.hook_resid_post"])
    batch_size: int = 16


@dataclass
class ExpectEntry:
    """A published value and its tolerance: ``{value, atol|rtol}``, ``{min}``, ``{max}`` or a range."""

    value: Optional[float] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class ExperimentConfig:
    pipeline: str = MISSING  # a name in pipelines/ or a path to a pipeline YAML
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    model: Optional[ModelConfig] = None
    data: Optional[RandomTokensConfig] = None
    stats: Optional[ActivationStatsConfig] = None
    # "stage.metric" -> tolerance; checked after the run (exit status 3 when not met)
    expect: Dict[str, ExpectEntry] = field(default_factory=dict)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=ExperimentConfig)
