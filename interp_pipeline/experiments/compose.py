"""Compose an experiment's config without the CLI: for notebooks (``api.compose`` is this), tests
and the rehearsal.

    from interp_pipeline.experiments.compose import compose
    cfg = compose("smoke", ["seed=1"])             # python -m interp_pipeline +experiment=smoke seed=1
    cfg = compose(["+experiment=smoke", "seed=1"])  # the same command line, as its overrides
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from interp_pipeline.common.paths import conf_dir, default_outputs_dir


def register() -> None:
    """The ``interp.outputs_dir``, ``interp.stages`` and ``interp.experiments`` (--help's lists) resolvers and
    the schemas; idempotent."""
    from interp_pipeline.config.safe_yaml import install
    from interp_pipeline.experiments.config import register_configs

    install()  # config files scanned (size, aliases, tags) before Hydra builds them

    if not OmegaConf.has_resolver("interp.outputs_dir"):
        OmegaConf.register_new_resolver("interp.outputs_dir", lambda: str(default_outputs_dir()))
    if not OmegaConf.has_resolver("interp.stages"):
        OmegaConf.register_new_resolver("interp.stages", _stage_list)
    if not OmegaConf.has_resolver("interp.experiments"):
        OmegaConf.register_new_resolver("interp.experiments", _experiment_list)
    register_configs()


def _stage_list() -> str:
    from interp_pipeline.pipeline.registry import describe_stages

    return describe_stages()


def _experiment_list() -> str:
    from interp_pipeline.experiments.catalog import describe_experiments

    return describe_experiments()


def compose(experiment: str | Sequence[str] | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The job config the CLI would run (without its ``hydra`` node).

    ``compose(EXPERIMENT, overrides)`` is ``python -m interp_pipeline +experiment=EXPERIMENT *overrides``'s
    config; EXPERIMENT must be one of conf/experiment/ (:class:`NotFound` names those there), and
    its name is kept in ``tracking.experiment_name`` (unless an override sets it), which names its
    MLflow experiment, so that ``api.run(cfg)`` logs where ``api.load`` looks. Given a list
    instead of a name, composes those command-line overrides as they are. Overrides use Hydra's
    grammar, ``expect.STAGE.METRIC...`` forms included.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from interp_pipeline.experiments.catalog import check_experiment
    from interp_pipeline.experiments.expect_overrides import rewrite_all

    named = isinstance(experiment, str)
    if named:
        check_experiment(experiment)
    everything = [f"+experiment={experiment}"] if named else list(experiment or [])
    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = hydra_compose("config", overrides=rewrite_all([*everything, *overrides]))
    if named and cfg.tracking.experiment_name is None:
        cfg.tracking.experiment_name = experiment
    return cfg
