"""Compose an experiment's config without the CLI: for notebooks and tests.

    from interp_pipeline.experiments.compose import compose
    cfg = compose(["+experiment=smoke", "seed=1"])
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from interp_pipeline.common.paths import conf_dir, default_outputs_dir


def register() -> None:
    """The ``interp.outputs_dir``, ``interp.stages`` and ``interp.experiments`` (--help's lists) resolvers and
    the schemas; idempotent."""
    from interp_pipeline.experiments.config import register_configs

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


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The job config the CLI would run for these overrides (without its ``hydra`` node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from interp_pipeline.experiments.expect_overrides import rewrite_all

    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return hydra_compose("config", overrides=rewrite_all(list(overrides or [])))
