"""Lists of small string records written in YAML (prompt pairs, fact prompts): each a mapping
with exactly the named fields, every one a non-empty string; errors name ``key[i].field``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of


def check_string_records(key: str, records: Any, fields: Sequence[str]) -> None:
    """A ConfigError naming the first record or field of ``records`` (at ``key``) that is not as above."""
    if isinstance(records, (str, Mapping)) or not isinstance(records, Sequence) or not records:
        raise ConfigError(key, f"expected a non-empty list of {{{', '.join(fields)}}} mappings, found {records!r}")
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ConfigError(f"{key}[{i}]", f"expected a mapping with {', '.join(fields)}, found {record!r}")
        for name in record:
            if name not in fields:
                raise ConfigError(f"{key}[{i}].{name}", f"expected one of {one_of(fields)}",
                                  suggestion=did_you_mean(str(name), fields))
        for name in fields:
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{key}[{i}].{name}", f"expected a non-empty string, found {value!r}")
