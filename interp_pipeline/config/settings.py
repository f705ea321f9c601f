"""A stage's settings, resolved from whatever gave them (a composed config, a notebook's keyword arguments).

Every stage is bound to one schema dataclass (``@stage(config=TMSConfig)``), which
holds each setting's name, type, range, choices and default, once. The command line,
pre-flight, ``api`` and a plain Python call of the stage all come through
``settings_of``/``settings_object``: unknown keys (with a did-you-mean), wrong types and
values out of range are refused the same way, and defaults come from the dataclass
alone, so a notebook call and a command-line run compute the same thing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from interp_pipeline.config.ranges import check_ranges
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of


# The experiment-level values a schema may interpolate (``seed: ${seed}``), as a config composed with
# no overrides has them; ExperimentConfig's own defaults are these.
ROOT_DEFAULTS: dict[str, Any] = {"seed": 0}


def settings_object(schema: type, given: Any) -> Any:
    """``given`` (a mapping, or an instance of ``schema`` made by hand) resolved and checked as
    :func:`settings_of` does, as an instance of ``schema`` (nested groups too)."""
    if isinstance(given, schema):
        # A dataclass checks nothing itself (TMSConfig(steps=-1) is refused here); a field it left at an
        # interpolated default ("${seed}") takes that default as a plain call does.
        given = {key: value for key, value in dataclasses.asdict(given).items()
                 if not (isinstance(value, str) and value.startswith("${"))}
    values = settings_of(schema, given)
    node = OmegaConf.structured(schema)
    node.merge_with(values)
    return OmegaConf.to_object(node)


def settings_of(schema: type, given: Mapping[str, Any], *, root: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``given`` over ``schema``'s defaults, as a plain dict.

    ``root`` holds the experiment's values of ROOT_DEFAULTS' keys (its ``seed``), which a schema's
    interpolated defaults (``seed: ${seed}``) take; without it they take ROOT_DEFAULTS' (a plain
    Python call). Raises ConfigError, keyed relative to the group (``lr``, ``matryoshka_widths[1]``),
    for an unknown key (with a did-you-mean), a value of the wrong type, or one out of range.
    """
    names = [f.name for f in dataclasses.fields(schema)]
    for key in given:
        if key not in names:
            raise ConfigError(str(key), f"expected a setting of {schema.__name__} ({one_of(names)}), found '{key}'",
                              suggestion=did_you_mean(str(key), names))
    node = OmegaConf.structured(schema)
    values = {**ROOT_DEFAULTS, **{key: root[key] for key in ROOT_DEFAULTS if root is not None and key in root}}
    node.merge_with(_plain_defaults(schema, tuple(sorted(values.items()))))
    try:
        node.merge_with(dict(given))
    except OmegaConfBaseException as error:
        from interp_pipeline.config.hydra_errors import describe

        key, _, message = describe(error).partition(": ")
        raise ConfigError(key, message) from None
    for name in names:
        if OmegaConf.is_missing(node, name):
            raise ConfigError(name, f"{schema.__name__} requires it: expected a value, found none")
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    check_ranges(values, schema)
    return values


@functools.cache
def _plain_defaults(schema: type, root_values: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The schema's defaults with interpolations (``seed: ${seed}``) resolved against ``root_values``:
    a stage's params from a data group (``data.params``) are not composed with its schema, and a
    notebook call has no experiment config at all, so neither has a ``${seed}`` of its own to read."""
    root = OmegaConf.create(dict(root_values))
    root["settings"] = OmegaConf.structured(schema)
    resolved = OmegaConf.to_container(root["settings"], resolve=True, throw_on_missing=False)
    assert isinstance(resolved, dict)
    return {key: value for key, value in resolved.items() if value != "???"}
