"""--help's experiment list (one line each, from the YAML header) and the offline variant that
pre-flight suggests when an experiment's model cannot be had."""

from __future__ import annotations

import logging

from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.run import Invocation, launch
from interp_pipeline.experiments.catalog import describe_experiments, experiments
from interp_pipeline.common.exit_status import EXIT_CONFIG
from interp_pipeline.common.paths import conf_dir


def test_every_experiment_has_a_one_line_description_from_its_header():
    infos = experiments()
    assert [i.name for i in infos] == sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
    for info in infos:
        assert info.description.endswith(".") and 20 <= len(info.description) <= 100, info
    text = describe_experiments()
    ioi = next(i for i in infos if i.name == "ioi_patching")
    assert f"  ioi_patching " in text and ioi.description in text
    assert "offline: +experiment=ioi_patching model=toy_ioi" in text


def test_help_shows_the_experiments_and_the_stages(outputs):
    # The resolvers --help's template uses, resolved as Hydra's help does.
    from omegaconf import OmegaConf

    page = OmegaConf.create({"a": "${interp.experiments:}", "b": "${interp.stages:}"})
    assert "Grokking modular addition" in page.a and "offline: +experiment=sae_train model=toy_induction" in page.a
    assert "interp_pipeline.stages.patching" in page.b


def test_an_unobtainable_model_suggests_the_experiments_own_offline_variant(outputs, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose(["+experiment=ioi_patching"])
    with caplog.at_level(logging.ERROR, logger="interp_pipeline"):
        status = launch(cfg, Invocation("ioi_patching", tmp_path)).status
    assert status == EXIT_CONFIG
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("error: model.name: model 'gpt2-small'") and "cannot be had" in line
    assert line.endswith("offline options: python -m interp_pipeline +experiment=ioi_patching model=toy_ioi"), line
    # An experiment without its own variant keeps the generic list.
    cfg = compose(["+experiment=smoke", "model=gpt2_small"])
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="interp_pipeline"):
        assert launch(cfg, Invocation("smoke", tmp_path)).status == EXIT_CONFIG
    assert "offline options: model=tiny (config-built)" in caplog.records[-1].getMessage()
