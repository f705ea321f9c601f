"""The ``expect:`` block: published values and tolerances, checked after a run.

Keys are ``stage.metric`` (the last value that stage logged for that metric);
entries are ``{value, atol}``, ``{value, rtol}``, ``{min}``, ``{max}`` or
``{min, max}``, each optionally with ``source`` (the paper, section or figure, or the
demo notebook) and ``why`` (the reason for the tolerance), which reports show beside
the numbers. This is how CI re-runs a published result and fails when a number drifts.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of


@dataclass(frozen=True)
class ExpectResult:
    key: str
    expected: str
    got: float | None
    passed: bool
    source: str = ""  # where the expected value comes from
    why: str = ""  # why the tolerance is what it is


# Text beside the numbers: where the published value comes from, and why the tolerance.
NOTES = ("source", "why")


def _entry(spec: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in spec.items() if v is not None and k not in NOTES}


def notes(spec: Mapping[str, Any]) -> dict[str, str]:
    """An entry's ``source`` and ``why`` ("" where not given)."""
    return {k: str(spec.get(k) or "") for k in NOTES}


def _check_metric(key: str, stage: str, metric: str, patterns: Sequence[str], config_key: str | None = None) -> None:
    """``metric`` is one the stage declares it can log (its patterns may hold globs: ``head_out/*``)."""
    if any(fnmatch.fnmatchcase(metric, pattern) for pattern in patterns):
        return
    named = [p for p in patterns if not any(c in p for c in "*?[")]
    shown = ", ".join(patterns) if patterns else "(none)"
    raise ConfigError(config_key or f"expect.{key}", f"expected a metric stage '{stage}' logs ({shown}), found '{metric}'",
                      suggestion=did_you_mean(metric, named))


def check_metric_name(config_key: str, name: str, stage_names: list[str],
                      metrics: Mapping[str, Sequence[str] | None]) -> None:
    """``name`` (STAGE.METRIC) is a metric some stage of the pipeline logs; else a ConfigError on ``config_key``."""
    stage, dot, metric = name.partition(".")
    if not dot or not metric:
        raise ConfigError(config_key, f"expected STAGE.METRIC, found '{name}'")
    if stage not in stage_names:
        raise ConfigError(config_key, f"expected a stage of this pipeline ({one_of(stage_names)}), found '{stage}' "
                                      f"in '{name}'", suggestion=did_you_mean(stage, stage_names))
    patterns = metrics.get(stage)
    if patterns is not None:
        _check_metric(name, stage, metric, patterns, config_key)


def validate_expectations(expect: Mapping[str, Mapping[str, Any]], stage_names: list[str],
                          metrics: Mapping[str, Sequence[str] | None] | None = None) -> None:
    """Every key names a stage of the pipeline and, where the stage declares its metrics
    (``metrics``: stage name -> patterns, None for a stage that declares none), one of them."""
    for key, spec in expect.items():
        stage, dot, metric = key.partition(".")
        if not dot or not metric:
            raise ConfigError(f"expect.{key}", "expected a key of the form STAGE.METRIC")
        if stage not in stage_names:
            raise ConfigError(
                f"expect.{key}",
                f"expected a stage of this pipeline ({one_of(stage_names)}), found '{stage}'",
                suggestion=did_you_mean(stage, stage_names),
            )
        patterns = (metrics or {}).get(stage)
        if patterns is not None:
            _check_metric(key, stage, metric, patterns)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"expect.{key}", f"expected {{value, atol|rtol}}, {{min}}, {{max}} or {{min, max}}, "
                                               f"found {spec!r}")
        entry = _entry(spec)
        if "value" in entry and "atol" not in entry and "rtol" not in entry:
            raise ConfigError(f"expect.{key}", "expected atol or rtol beside value")
        if "value" not in entry and ("atol" in entry or "rtol" in entry):
            raise ConfigError(f"expect.{key}", "expected value beside atol/rtol")
        if not {"value", "min", "max"} & entry.keys():
            raise ConfigError(f"expect.{key}", "expected value (with atol or rtol), min or max")


def describe(entry: Mapping[str, float]) -> str:
    parts = []
    if "value" in entry:
        tolerance = entry.get("atol", 0.0) + entry.get("rtol", 0.0) * abs(entry["value"])
        parts.append(f"{entry['value']:g} ± {tolerance:g}")
    if "min" in entry:
        parts.append(f">= {entry['min']:g}")
    if "max" in entry:
        parts.append(f"<= {entry['max']:g}")
    return ", ".join(parts)


def check(entry: Mapping[str, float], got: float | None) -> bool:
    if got is None or math.isnan(got):
        return False
    ok = True
    if "value" in entry:
        tolerance = entry.get("atol", 0.0) + entry.get("rtol", 0.0) * abs(entry["value"])
        ok &= abs(got - entry["value"]) <= tolerance
    if "min" in entry:
        ok &= got >= entry["min"]
    if "max" in entry:
        ok &= got <= entry["max"]
    return bool(ok)


REHEARSAL_EXPECTED = "produced (rehearsal)"


def check_expectations(
    expect: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, float], *, rehearsal: bool = False
) -> list[ExpectResult]:
    """Compare each expectation with ``metrics`` (keyed ``stage.metric``); a missing metric fails.

    ``rehearsal``: only that each key was produced (a number, not NaN) is checked, not its value:
    a run on random weights (runner.rehearsal) still proves every key the experiment checks is made.
    """
    results = []
    for key, spec in expect.items():
        entry = _entry(spec)
        got = metrics.get(key)
        if rehearsal:
            results.append(ExpectResult(key, REHEARSAL_EXPECTED, got, got is not None and not math.isnan(got),
                                         **notes(spec)))
        else:
            results.append(ExpectResult(key, describe(entry), got, check(entry, got), **notes(spec)))
    return results


def per_name_matches(key: str, metrics: Mapping[str, float]) -> list[str]:
    """For a missing ``stage.metric``: the run's ``stage.<name>/metric`` (a stage that made several
    things by name, e.g. SAEs from one pass), which an expect entry can name instead."""
    stage, _, metric = key.partition(".")
    return sorted(k for k in metrics if k.startswith(f"{stage}.") and k.endswith(f"/{metric}") and k != key)


def render_table(results: list[ExpectResult]) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title="expect", title_justify="left")
    table.add_column("metric")
    table.add_column("expected")
    table.add_column("got", justify="right")
    table.add_column("", justify="center")
    for result in results:
        got = "missing" if result.got is None else f"{result.got:.6g}"
        table.add_row(result.key, result.expected, got, "ok" if result.passed else "FAIL")
    buffer = StringIO()
    Console(file=buffer, width=100, color_system=None).print(table)
    return buffer.getvalue().rstrip()
