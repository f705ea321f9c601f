"""A config group's settings given as keyword arguments (a notebook, a test), checked as a composed config is.

From the command line, Hydra checks a group's keys and types against its schema
(interp_pipeline.config.schema) and interp_pipeline.config.ranges checks its ranges;
a stage function called directly gets none of that. ``settings_of`` gives it all
three, and fills in the schema's defaults, so the dataclass stays the one source of
a setting's name, type, range and default.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from interp_pipeline.config.ranges import check_ranges, dataclass_of
from interp_pipeline.errors import ConfigError, did_you_mean, one_of


def settings_of(schema: type, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over ``schema``'s defaults, as a plain dict.

    Raises ConfigError, keyed relative to the group (``lr``, ``matryoshka_widths[1]``), for
    an unknown key (with a did-you-mean), a value of the wrong type, or one out of range.
    """
    names = [f.name for f in dataclasses.fields(schema)]
    for key in given:
        if key not in names:
            raise ConfigError(str(key), f"expected a setting of {schema.__name__} ({one_of(names)}), found '{key}'",
                              suggestion=did_you_mean(str(key), names))
    node = OmegaConf.structured(schema)
    node.merge_with(_plain_defaults(schema))
    try:
        node.merge_with(dict(given))
    except OmegaConfBaseException as error:
        from interp_pipeline.hydra_errors import describe

        key, _, message = describe(error).partition(": ")
        raise ConfigError(key, message) from None
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    check_ranges(values, schema)
    return values


@functools.cache
def _plain_defaults(schema: type) -> dict[str, Any]:
    """The schema's defaults with interpolations (``seed: ${seed}``) resolved as a config composed
    with no overrides resolves them: a notebook call has no experiment config to read them from."""
    from interp_pipeline.config.schema import ExperimentConfig

    hints = typing.get_type_hints(ExperimentConfig)
    group = next((f.name for f in dataclasses.fields(ExperimentConfig) if dataclass_of(hints[f.name]) is schema), None)
    if group is None:
        return {}
    root = OmegaConf.structured(ExperimentConfig)
    root[group] = OmegaConf.structured(schema)
    resolved = OmegaConf.to_container(root[group], resolve=True)
    assert isinstance(resolved, dict)
    return resolved
