"""Schemas for every config group, so Hydra rejects unknown keys and wrong types at compose time.

Each group of ``conf/`` has one dataclass here; the top-level :class:`ExperimentConfig`
ties them together and is registered as ``config_schema``, which ``conf/config.yaml``
names first in its defaults list. Groups a pipeline does not use stay ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, SI

from interp_pipeline.analysis.config import (
    ActivationStatsConfig, FourierConfig, HeadScoresConfig, InspectConfig, LogitLensConfig,
)
from interp_pipeline.config.fields import at_least, choice, fraction, positive, used_by
from interp_pipeline.config.settings import ROOT_DEFAULTS
from interp_pipeline.editing.config import RomeConfig
from interp_pipeline.models.config import ModelConfig
from interp_pipeline.patching.config import PatchingConfig
from interp_pipeline.probes.config import ProbeConfig
from interp_pipeline.superposition.config import TMSConfig, TMSGeometryConfig
from interp_pipeline.tracing.config import CausalTracingConfig

L1_PENALISED = ("standard", "gated")
TOP_K = ("topk", "batchtopk", "matryoshka_batchtopk")
# SAELens's training architectures (sae_lens.registry) that interp_pipeline.sae.config maps our keys onto.
SAE_ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk")


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
class CacheConfig:
    """Caching activations to a Zarr v3 store (the cache_activations stage)."""

    hooks: List[str] = field(default_factory=lambda: ["blocks.0.hook_resid_post"])
    positions: str = "all"  # all, last, drop_bos, non_padding, or START:STOP
    batch_size: int = positive(8)
    dtype: str = "float32"  # float32, float16, bfloat16
    chunk_rows: int = positive(4096)
    compression: str = "zstd"  # zstd, blosc, none
    compression_level: int = at_least(0, 3)
    max_tokens: Optional[int] = positive(None)  # token budget (rows stored)
    store: Optional[str] = None  # local path or fsspec URL; default: beside the stage's cache entry
    shard_index: int = at_least(0, 0)
    num_shards: int = positive(1)
    pad_token_id: Optional[int] = None  # default: the model tokenizer's


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
    device: str = choice("auto", ("auto", "cpu", "cuda", "mps"))  # auto: cuda when present, else cpu
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
    exclude_special_tokens: Any = True  # true (the tokenizer's BOS/EOS/PAD), false, or a list of token ids
    dense_threshold: float = fraction(0.1, open_below=True)  # a latent firing on more than this fraction of tokens counts as dense
    compute_kl: bool = True
    compute_ce_loss: bool = True


@dataclass
class SAESourceConfig:
    """An SAE to load (the load_sae stage): SAELens's release + sae_id, or a directory saved by SAELens."""

    release: Optional[str] = None  # a release in sae_lens/pretrained_saes.yaml, e.g. gpt2-small-res-jb
    sae_id: Optional[str] = None  # an SAE of that release, e.g. blocks.8.hook_resid_pre
    path: Optional[str] = None  # instead: a directory with cfg.json + sae_weights.safetensors
    device: str = "auto"
    dtype: str = "float32"
    fold_W_dec_norm: bool = False


@dataclass
class SAEFeaturesConfig:
    """An SAE's features on prompts, and a dashboard of the strongest (the sae_features stage)."""

    hook: Optional[str] = None  # where to read the model; None: the hook the SAE was trained on
    top_k: int = positive(5)  # features listed per token (SAELens's tutorial: 5)
    heatmap_features: int = positive(20)  # heatmap columns: the strongest of the tokens' top-k
    dashboard_features: int = positive(10)  # features on the dashboard, strongest on the prompts first
    contexts: int = positive(8)  # max-activating contexts per feature
    context_before: int = at_least(0, 8)  # tokens shown left of the max token
    context_after: int = at_least(0, 4)  # and right of it
    histogram_bins: int = positive(30)
    batch_size: int = positive(16)  # sequences per forward pass
    max_sequences: Optional[int] = positive(None)  # the dashboard reads the first so many; None: all
    exclude_special_tokens: bool = True  # BOS/EOS/PAD out of the metrics, heatmap and max search
    model_label: Optional[str] = None  # names in titles; None: the model's name
    sae_label: Optional[str] = None  # None: the SAE's architecture and width


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
    tracing: Optional[CausalTracingConfig] = None
    # "stage.metric" -> tolerance; checked after the run (exit status 3 when not met)
    expect: Dict[str, ExpectEntry] = field(default_factory=dict)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=ExperimentConfig)
