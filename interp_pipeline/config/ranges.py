"""Check every config value against the range its schema field declares (``positive``, ``fraction``, ``choice`` ...).

Hydra checks types at compose time; ranges it has no notion of. The schema
(interp_pipeline.experiments.config) writes each numeric field's range once, as field
metadata, and this walks the composed config against it, so ``stats.batch_size_prompts=0``
is one line naming the key before any work, not torch's error from inside a stage.
The same walk takes a plain mapping (a stage's keyword arguments from a notebook,
interp_pipeline.config.settings), so those meet the same ranges.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of


def _describe(meta: dict[str, Any], integer: bool) -> str:
    low, high, exclusive = meta.get("min"), meta.get("max"), meta.get("exclusive", False)
    kind = "an integer" if integer else "a number"
    if integer and low is not None and exclusive and high is None:
        return f"{kind} >= {int(low) + 1}"
    if high is None:
        return f"{kind} {'>' if exclusive else '>='} {low:g}"
    return f"{kind} in {'(' if exclusive else '['}{low:g}, {high:g}]"


def _in_range(value: float, meta: dict[str, Any]) -> bool:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value <= low if meta.get("exclusive") else value < low):
        return False
    return high is None or value <= high


def _is_integer_field(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "int" in text and "float" not in text


def check_ranges(cfg: Mapping[str, Any], schema: type, prefix: str = "") -> None:
    """Raise ConfigError for the first value of ``cfg`` (a DictConfig or a plain mapping) outside
    its ``schema`` field's range."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in cfg or (isinstance(cfg, DictConfig) and OmegaConf.is_missing(cfg, f.name)):
            continue
        key = f"{prefix}{f.name}"
        value = cfg[f.name]
        nested = dataclass_of(hints.get(f.name))
        if nested is not None and isinstance(value, Mapping):
            check_ranges(value, nested, f"{key}.")
            continue
        meta = dict(f.metadata)
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(key, f"expected one of {one_of(meta['choices'])}, found {value!r}",
                              suggestion=did_you_mean(str(value), meta["choices"]))
        if "min" not in meta or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not _in_range(value, meta):
            raise ConfigError(key, f"expected {_describe(meta, _is_integer_field(hints.get(f.name)))}, "
                                   f"found {value!r}")


def dataclass_of(annotation: Any) -> type | None:
    """The dataclass behind ``X`` or ``Optional[X]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None

