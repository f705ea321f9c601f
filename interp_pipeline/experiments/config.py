"""The experiment's schema, so Hydra rejects unknown keys and wrong types at compose time.

Each config group's dataclass lives next to the code that reads it (patching/config.py,
tracing/config.py, ...); this module holds only the run-level ones (paths, runner, tracking,
expect, sweep) and assembles them all into :class:`ExperimentConfig`, registered as
``config_schema``, which ``conf/config.yaml`` names first in its defaults list. Groups a
pipeline does not use stay ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, SI

from interp_pipeline.activations.config import CacheConfig
from interp_pipeline.analysis.config import (
    ActivationStatsConfig, FourierConfig, HeadScoresConfig, InspectConfig, LogitLensConfig, SAEFeaturesConfig,
)
from interp_pipeline.config.fields import at_least, positive
from interp_pipeline.config.secrets import CREDENTIAL_WORDS
from interp_pipeline.config.settings import ROOT_DEFAULTS
from interp_pipeline.circuits.config import CircuitsConfig
from interp_pipeline.editing.config import KeyCovarianceConfig, MemitConfig, RomeConfig
from interp_pipeline.models.config import ModelConfig
from interp_pipeline.patching.config import PatchingConfig
from interp_pipeline.probes.config import ProbeConfig
from interp_pipeline.sae.config import SAEConfig, SAEEvalConfig, SAESourceConfig
from interp_pipeline.steering.config import SteerConfig, SteeringVectorConfig
from interp_pipeline.superposition.config import TMSConfig, TMSGeometryConfig
from interp_pipeline.tracing.config import CausalTracingConfig
from interp_pipeline.transcoders.config import (AttributionConfig, TranscoderConfig, TranscoderEvalConfig,
                                                TranscoderSourceConfig)


@dataclass
class PathsConfig:
    # Absolute by construction (see interp_pipeline.common.paths.default_outputs_dir).
    outputs: str = SI("${interp.outputs_dir:}")


@dataclass
class RunnerConfig:
    force: bool = False  # recompute every stage, ignoring the stage cache
    from_stage: Optional[str] = None  # recompute this stage and everything downstream of it
    cache_dir: str = SI("${paths.outputs}/cache")
    plugins: List[str] = field(default_factory=list)  # modules to import that register more stages
    check_expect: bool = True  # false: skip the expect: block (e.g. the experiment run on another model)
    # true: every expect: key must be produced, its value not judged (a GPT-2 rehearsal on random
    # weights, interp_pipeline/rehearsal/); a missing key, or NaN, still fails
    rehearsal: bool = False
    # torch's intra-op threads; None: cores / parallel jobs in a sweep, 1 for toy-sized models (threads.py)
    num_threads: Optional[int] = positive(None)


@dataclass
class TrackingConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI, else sqlite:///<paths.outputs>/mlflow.db
    uri: Optional[str] = None
    # None: the name of the experiment config (+experiment=NAME)
    experiment_name: Optional[str] = None
    # MLflow's system metrics (CPU, memory, disk, network, GPU) on each computed stage's run,
    # one sample every `system_metrics_interval` s; a stage shorter than that logs none.
    system_metrics: bool = True
    system_metrics_interval: float = positive(10.0)
    # Models and SAEs a stage computes, logged as MLflow models (pyfunc, safetensors inside)
    # so they can be registered; ones larger than this many MB are not (0: none are).
    max_model_mb: float = at_least(0, 200.0)
    # A value whose key ends in one of these words is masked in everything logged (config/secrets.py);
    # values read from the environment (${oc.env:...}) are logged as their interpolation text whatever their key.
    mask_keys: List[str] = field(default_factory=lambda: list(CREDENTIAL_WORDS))


@dataclass
class DataConfig:
    """A token dataset: which dataset stage makes it, and that stage's params.

    The options in conf/data/ pick a stage (random_tokens, repeated_tokens,
    prompt_tokens, text_file_tokens, hf_dataset_tokens, task_tokens); its params
    are checked against that stage's schema before anything runs.
    """

    fn: str = MISSING
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ExpectEntry:
    """A published value and its tolerance: ``{value, atol|rtol}``, ``{min}``, ``{max}`` or a range."""

    value: Optional[float] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    # Where the value comes from (paper, section or figure; demo notebook) and why the tolerance is what
    # it is: shown beside the value in every run's report and in `interp-pipeline repro`'s.
    source: Optional[str] = None
    why: Optional[str] = None


@dataclass
class SweepConfig:
    """What a multirun optimises and reports (interp_pipeline/sweeps): STAGE.METRIC names."""

    # Returned to the sweeper by each job (hydra/sweeper=optuna); several make a Pareto front.
    objective: List[str] = field(default_factory=list)
    direction: List[str] = field(default_factory=list)  # maximize | minimize, one per objective
    summary: List[str] = field(default_factory=list)  # more metrics for the sweep's summary table


@dataclass
class ExperimentConfig:
    pipeline: str = MISSING  # a name in pipelines/ or a path to a pipeline YAML
    seed: int = ROOT_DEFAULTS["seed"]
    # Overrides that run this experiment without the hub (`model=toy_ioi`), suggested by pre-flight
    # when its model or SAE cannot be had here; --help lists them too.
    offline: Optional[str] = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    model: Optional[ModelConfig] = None
    data: Optional[DataConfig] = None
    stats: Optional[ActivationStatsConfig] = None
    scores: Optional[HeadScoresConfig] = None
    fourier: Optional[FourierConfig] = None
    cache: Optional[CacheConfig] = None
    # Pipelines that make a second dataset or store beside the first (quickstart's patching
    # pairs, and the SAE's own training tokens and store): same schemas, their own keys.
    pairs: Optional[DataConfig] = None
    sae_data: Optional[DataConfig] = None
    sae_cache: Optional[CacheConfig] = None
    patching: Optional[PatchingConfig] = None
    sae: Optional[SAEConfig] = None
    sae_source: Optional[SAESourceConfig] = None
    sae_eval: Optional[SAEEvalConfig] = None
    # Prompts to look at beside a dataset (sae_features): a dataset stage and its params, as `data`.
    prompts: Optional[DataConfig] = None
    sae_features: Optional[SAEFeaturesConfig] = None
    inspect: Optional[InspectConfig] = None
    logit_lens: Optional[LogitLensConfig] = None
    tms: Optional[TMSConfig] = None
    tms_geometry: Optional[TMSGeometryConfig] = None
    # Linear probes: a label stage (fn + params, as `data`) and the probes' settings.
    labels: Optional[DataConfig] = None
    probe: Optional[ProbeConfig] = None
    # ROME: the edits' settings, and the token dataset the key covariance is estimated on.
    rome: Optional[RomeConfig] = None
    rome_data: Optional[DataConfig] = None
    # MEMIT's batch edits, and the keys' second moment it shares with ROME (the key_covariance stage).
    memit: Optional[MemitConfig] = None
    covariance: Optional[KeyCovarianceConfig] = None
    tracing: Optional[CausalTracingConfig] = None
    # Steering: the vector's settings, how it is applied, and the ordinary sequences its loss is read on.
    steering: Optional[SteeringVectorConfig] = None
    steer: Optional[SteerConfig] = None
    steer_data: Optional[DataConfig] = None
    circuits: Optional[CircuitsConfig] = None  # circuit discovery (circuits/config.py)
    # Transcoders and attribution graphs (interp_pipeline.transcoders).
    transcoder: Optional[TranscoderConfig] = None
    transcoder_eval: Optional[TranscoderEvalConfig] = None
    transcoder_source: Optional[TranscoderSourceConfig] = None
    attribution: Optional[AttributionConfig] = None
    # "stage.metric" -> tolerance; checked after the run (exit status 3 when not met)
    expect: Dict[str, ExpectEntry] = field(default_factory=dict)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=ExperimentConfig)
