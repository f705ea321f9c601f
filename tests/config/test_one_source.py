"""One source for every setting: each stage's schema dataclass (issue: "One source for every setting").

A default written in a stage's signature, or repeated in conf/<group>/*.yaml, is a second copy
that can drift from the schema's (train_tms once trained 3,000 steps from Python and 2,000 from the
command line). These tests hold every registered stage and every config group to the one copy.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest
from omegaconf import OmegaConf

from interp_pipeline.experiments.compose import compose
from interp_pipeline.config.ranges import dataclass_of
from interp_pipeline.experiments.config import ExperimentConfig
from interp_pipeline.config.settings import settings_of
from interp_pipeline.experiments.run import prepare
from interp_pipeline.common.paths import conf_dir
from interp_pipeline.pipeline.registry import INJECTED_PARAMS, SETTINGS_PARAM, load_stage_modules, registered_stages

load_stage_modules()
# The package's own stages (tests register toy ones of their own).
STAGES = {n: d for n, d in registered_stages().items() if d.fn.__module__.startswith("interp_pipeline.")}
_GROUP_TYPES = typing.get_type_hints(ExperimentConfig)
# conf/<group>/ folders whose options are typed by a schema (the data-like groups are typed by DataConfig,
# whose `params` each dataset stage's own schema checks).
SCHEMA_GROUPS = {f.name: dataclass_of(_GROUP_TYPES[f.name]) for f in dataclasses.fields(ExperimentConfig)
                 if dataclass_of(_GROUP_TYPES[f.name]) is not None and (conf_dir() / f.name).is_dir()}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_stage_signature_restates_a_setting(name):
    """A stage takes its inputs, one ``settings`` object and the injected parameters; the only defaults
    in its signature are None for an optional input and the injected parameters' own."""
    definition = STAGES[name]
    parameters = definition.signature.parameters
    restated = [arg for arg, p in parameters.items()
                if arg not in INJECTED_PARAMS and p.default is not inspect.Parameter.empty and p.default is not None]
    assert not restated, f"{name}() restates defaults of {restated}: move them to its schema"
    assert all(p.kind is not p.VAR_KEYWORD for p in parameters.values()), f"{name}() takes **kwargs"
    if definition.config is not None:
        assert SETTINGS_PARAM in parameters


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_with_settings_is_bound_to_a_schema(name):
    definition = STAGES[name]
    assert definition.config is not None or not definition.setting_names()
    if definition.config is not None:
        assert dataclasses.is_dataclass(definition.config)


def _yaml_files():
    for group, schema in sorted(SCHEMA_GROUPS.items()):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            yield pytest.param(group, schema, path, id=f"{group}/{path.name}")


def _schema_defaults(schema: type) -> dict:
    defaults = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
    return defaults


@pytest.mark.parametrize(("group", "schema", "path"), list(_yaml_files()))
def test_no_yaml_key_repeats_its_schemas_default(group, schema, path):
    written = OmegaConf.to_container(OmegaConf.load(path)) or {}
    defaults = _schema_defaults(schema)
    repeated = sorted(key for key, value in written.items()
                      if key in defaults and not OmegaConf.is_interpolation(OmegaConf.load(path), key)
                      and value == defaults[key] and not dataclasses.is_dataclass(defaults[key]))
    assert not repeated, f"conf/{group}/{path.name} repeats {schema.__name__}'s defaults for {repeated}"


@pytest.mark.parametrize("group", sorted(g for g in SCHEMA_GROUPS if (conf_dir() / g / "default.yaml").exists()))
def test_a_groups_default_option_resolves_to_its_schemas_defaults(group, outputs):
    """What a plain Python call gets (the schema's defaults) is what the command line's default option gets."""
    cfg = compose([f"+{group}=default"])
    from_cli = OmegaConf.to_container(cfg[group], resolve=True)
    assert from_cli == settings_of(SCHEMA_GROUPS[group], {})


def test_train_tms_from_python_and_from_the_command_line_train_the_same_steps(outputs, monkeypatch):
    """The drift that started this: train_tms() trained 3,000 steps, the tms experiment 2,000."""
    import interp_pipeline.superposition.tms as tms
    from interp_pipeline.stages.tms import train_tms

    spec = {s.name: s for s in prepare(compose(["+experiment=tms"])).spec.stages}
    from_cli = spec["models"].definition.settings(spec["models"].params)
    seen = []
    monkeypatch.setattr(tms, "train_across_sparsity", lambda settings, tracker: seen.append(settings) or {})
    train_tms()  # what a notebook calls: the stage's own code path, up to the training itself
    assert seen == [from_cli]
    assert from_cli.steps == 2000 and from_cli.batch_size_samples == 256


def test_a_data_stages_seed_default_is_the_experiments_seed(outputs):
    """A data group's params reach their stage untyped (DataConfig.params), so the schema's ``${seed}`` is
    resolved against the experiment's seed by the pipeline spec, not against a plain call's 0."""
    spec = {s.name: s for s in prepare(compose(["+experiment=smoke", "seed=3", "~data.params.seed"])).spec.stages}
    assert spec["tokens"].params["seed"] == 3
    assert STAGES["random_tokens"].settings({"n_sequences": 2, "seq_len": 4}).seed == 0  # a plain call's


def test_a_settings_object_made_by_hand_is_checked_like_keyword_settings():
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.stages.tms import train_tms
    from interp_pipeline.superposition.config import TMSConfig

    with pytest.raises(ConfigError, match=r"^steps: expected an integer >= 1, found -1"):
        train_tms(settings=TMSConfig(steps=-1))
    with pytest.raises(ConfigError, match=r"^stepz: expected a setting of TMSConfig .*did you mean 'steps'"):
        train_tms(stepz=10)
