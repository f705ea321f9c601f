"""+experiment=steering: a layer or position outside the model, an SAE of another d_model: exit status 2
before any work (the toy model is not trained), one line naming the key."""

from __future__ import annotations

import pytest

from tests.pipeline.test_preflight_before_work import run_and_capture
from tests.pipeline.test_sae_features_preflight import saved_sae

TOY = ["+experiment=steering", "model=toy_facts"]


@pytest.mark.parametrize(("overrides", "line"), [
    (["steering.layer=4"], "error: steering.layer: expected a layer in 0..3, found 4"),
    (["steer.layer=7"], "error: steer.layer: expected a layer in 0..3, found 7"),
    (["steer.positions=front", "steer.start=40"], "error: steer.start: expected a position in 0.."),
    (["steering.positive=null"], "error: steering.positive: expected the answer (a facts prompt's object) of the "
                                 "positive side, found none"),
])
def test_settings_outside_the_model(outputs, caplog, overrides, line):
    assert run_and_capture(outputs, caplog, [*TOY, *overrides]).startswith(line)


def test_an_sae_vector_of_another_d_model(outputs, caplog, tmp_path):
    folder = saved_sae(tmp_path / "sae", d_in=32, hook="blocks.1.hook_resid_pre")
    line = run_and_capture(outputs, caplog, [*TOY, "pipeline=steering_sae", "+sae_source=local",
                                             f"sae_source.path={folder}", "steering.method=sae", "steering.feature=3"])
    assert line == "error: steering.inputs.sae: expected an SAE of d_in 64 (the model's d_model), found d_in 32", line
