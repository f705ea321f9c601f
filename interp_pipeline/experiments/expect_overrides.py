"""``expect:`` entries on the command line, in the forms people type.

An ``expect:`` key is ``STAGE.METRIC`` and metric names hold dots themselves
(``scores.induction.layer1.max``), so Hydra, which reads every dot of an override's
key as a level, cannot reach an entry: ``expect.stats.loss_mean.max=6`` looks for a
key ``stats``. Before Hydra parses the command line, these forms are rewritten into
the one Hydra can express, a merge of a one-entry dict:

    +expect.stats.loss_mean={min: 4.9}   ->  ++expect={stats.loss_mean: {min: 4.9}}
    expect.stats.loss_mean.max=6         ->  ++expect={stats.loss_mean: {max: 6}}

Both add the entry or change the fields named (set a field to null to drop it); a
comma list sweeps as usual. ``~expect`` (check nothing) needs no rewriting. Any
other ``expect.`` override (``~expect.stats.loss_mean``, a number for a whole entry)
is refused in one line that shows these forms, rather than by Hydra's error about a
key ``stats``.
"""

from __future__ import annotations

import dataclasses
import re

from interp_pipeline.experiments.config import ExpectEntry
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

FIELDS = tuple(f.name for f in dataclasses.fields(ExpectEntry))
FORMS = (f"+expect.STAGE.METRIC={{min: V, max: V}} (or {{value: V, atol: T}}), expect.STAGE.METRIC.FIELD=V "
         f"(FIELD one of {one_of(FIELDS)}), or ~expect to check none")
_OVERRIDE = re.compile(r"^\+{0,2}expect\.([^=]+)=(.*)$", re.S)
_EXPECT = re.compile(r"^[+~]*expect\.")
_KEY = re.compile(r"^[\w.\-/]+$")


def _split_top_level(value: str) -> list[str] | None:
    """``value`` split at the commas outside braces; None for what this rewrite cannot read."""
    if re.search(r"[()\[\]'\"\\]", value):
        return None  # sweep functions, lists, quoting
    parts, depth, start = [], 0, 0
    for index, char in enumerate(value):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return None
        if char == "," and depth == 0:
            parts.append(value[start:index].strip())
            start = index + 1
    parts.append(value[start:].strip())
    return parts if depth == 0 and all(parts) else None


def _refuse(override: str) -> ConfigError:
    key = override.lstrip("+~").split("=", 1)[0]
    field = key.rsplit(".", 1)[-1]
    hint = did_you_mean(field, FIELDS) if field not in FIELDS else None
    return ConfigError(key, f"expected {FORMS}; found '{override}'", suggestion=hint)


def rewrite(override: str) -> str:
    """The override Hydra can apply for an ``expect.STAGE.METRIC`` one; any other comes back unchanged.

    Raises ConfigError, with the forms that work, for an ``expect.`` override Hydra could not apply.
    """
    if not _EXPECT.match(override):
        return override
    match = _OVERRIDE.match(override)
    if match is None:
        raise _refuse(override)  # ~expect.STAGE.METRIC: Hydra cannot reach a key with dots in it
    path, value = match.group(1), match.group(2).strip()
    values = _split_top_level(value)
    if not _KEY.match(path) or values is None or "." not in path:
        raise _refuse(override)
    stage_metric, _, last = path.rpartition(".")
    if all(v.startswith("{") and v.endswith("}") for v in values):
        return "++expect=" + ",".join(f"{{{path}: {v}}}" for v in values)
    if not any(v.startswith("{") for v in values) and last in FIELDS and "." in stage_metric:
        return "++expect=" + ",".join(f"{{{stage_metric}: {{{last}: {v}}}}}" for v in values)
    raise _refuse(override)


def rewrite_all(overrides: list[str]) -> list[str]:
    return [rewrite(o) for o in overrides]
