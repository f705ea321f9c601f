"""Every shipped experiment composes and passes validation, without running anything."""

from __future__ import annotations

import pytest

from interp_pipeline.compose import compose
from interp_pipeline.experiment import prepare
from interp_pipeline.paths import conf_dir
from interp_pipeline.pipeline.spec import run_preflight

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert "smoke" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name, outputs):
    prepared = prepare(compose([f"+experiment={name}"]))
    run_preflight(prepared.spec.stages)
    assert prepared.spec.stages
