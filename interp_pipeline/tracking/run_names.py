"""Run names for the MLflow runs list: what tells runs apart, readable in the UI's name column.

The UI cuts a name at about 40 characters, so the parent run is named by the
experiment and only the overrides that differ between the jobs of its sweep (all
of them for a single run); the full override list stays in the ``hydra.overrides``
tag. Stage runs carry their pipeline position (``03 scores``): the UI lists runs by
start time, newest first, and sorting the name column then puts them in pipeline order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Overrides that change how a run is executed or logged, not what it computes.
_QUIET_PREFIXES = ("runner.", "tracking.", "hydra.", "hydra/", "paths.")
MAX_VALUE = 24  # characters of one override's value kept in a name
MAX_NAME = 120
EXPECT_FAILED_SUFFIX = "[expect failed]"


def override_key(override: str) -> str:
    """``+sae.l1=1`` -> ``sae.l1``; ``~expect`` -> ``expect``."""
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def swept_keys(sweep_overrides: Iterable[str]) -> list[str]:
    """The keys a sweep varies (``a=1,2``, ``range(...)``, ``choice(...)``, ``interval(...)``),
    found by Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    return [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]


def _short(override: str) -> str:
    key, sep, value = override.partition("=")
    if len(value) > MAX_VALUE:
        value = value[:MAX_VALUE - 1] + "…"
    return f"{key.lstrip('+')}{sep}{value}"


def parent_run_name(experiment: str, overrides: Sequence[str], swept: Sequence[str] | None = None) -> str:
    """``sae_train sae.l1_coefficient=5``: the experiment and the overrides that set this run apart.

    ``swept``: the keys the sweep varies (None for a single run, where every override
    but the quiet ones, such as ``runner.*`` and ``tracking.*``, is shown).
    """
    if swept is not None:
        shown = [o for o in overrides if override_key(o) in set(swept)]
    else:  # +experiment=NAME names the run already
        shown = [o for o in overrides
                 if not override_key(o).startswith(_QUIET_PREFIXES) and override_key(o) != "experiment"]
    name = " ".join([experiment, *(_short(o) for o in shown)])
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


def stage_run_name(index: int, total: int, stage: str) -> str:
    """``03 scores``: zero-padded so that sorting the names sorts the pipeline."""
    width = max(2, len(str(total)))
    return f"{index + 1:0{width}d} {stage}"


def with_expect_failed(name: str) -> str:
    return name if name.endswith(EXPECT_FAILED_SUFFIX) else f"{name} {EXPECT_FAILED_SUFFIX}"
