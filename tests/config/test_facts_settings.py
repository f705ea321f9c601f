"""The drifts of the factual-recall stages' settings, gone: causal tracing's batch (the engine's 512 against
the schema's 1,024) and the seeds of probes and ROME (${seed} in YAML, 0 in the schema) resolve alike from
Python and from the command line."""

from __future__ import annotations

import pytest

from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.run import prepare

CASES = [("causal_tracing", "tracing", ["model=toy_facts"]), ("probes", "probe", []), ("rome_edit", "rome", [])]


def _from_cli(overrides: list[str], stage: str):
    spec = {s.name: s for s in prepare(compose(overrides)).spec.stages}[stage]
    return spec.definition, spec.definition.settings(spec.params)


@pytest.mark.parametrize(("experiment", "stage", "overrides"), CASES)
def test_a_plain_call_resolves_what_the_command_line_does(experiment, stage, overrides, outputs):
    definition, from_cli = _from_cli([f"+experiment={experiment}", *overrides], stage)
    # What the experiment itself sets (rome: the world and the edits) aside, a plain call gets the same.
    given = {"task": from_cli.task, "n_random_requests": 6, "steps": 50} if stage == "rome" else \
        {"max_prompts": 256} if stage == "tracing" else {}
    assert definition.settings(given) == from_cli
    if stage == "tracing":
        assert from_cli.batch_size_prompts == 1024


@pytest.mark.parametrize(("experiment", "stage"), [("probes", "probe"), ("rome_edit", "rome")])
def test_the_seed_follows_the_experiments_on_the_command_line(experiment, stage, outputs):
    _, from_cli = _from_cli([f"+experiment={experiment}", "seed=3"], stage)
    assert from_cli.seed == 3
