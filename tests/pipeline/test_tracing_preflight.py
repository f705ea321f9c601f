"""Causal tracing's bad input stops the run before any work (exit 2, one line naming the key), with
the toy facts model still untrained: subject not in its prompt, an object of several tokens, a
window wider than the model (run_and_capture also checks that nothing ran)."""

from __future__ import annotations

import pytest

from tests.pipeline.test_preflight_before_work import run_and_capture

PAPER = ["+experiment=causal_tracing", "model=toy_facts", "data=fact_prompts_paper"]
CASES = {
    "subject not in the prompt": (
        [*PAPER, "data.params.prompts=[{prompt: 'Ka Lin lives in', subject: 'Vor', object: ' Rome'}]"],
        "data.params.prompts[0].subject: 'Vor' does not occur in the prompt 'Ka Lin lives in'"),
    "object of several tokens": (
        [*PAPER, "data.params.prompts=[{prompt: 'Ka Lin lives in', subject: 'Ka Lin', object: ' Rome Paris'}]"],
        "data.params.prompts[0].object: expected a single token, found 2 tokens ['Rome', 'Paris']"),
    "window wider than the model": (
        ["+experiment=causal_tracing", "model=toy_facts", "tracing.window=9"],
        "tracing.window: expected at most the model's 4 layers, found 9"),
    "unknown kind": (
        ["+experiment=causal_tracing", "model=toy_facts", "tracing.kinds=[hidden,mpl]"],
        "tracing.kinds[1]: expected one of"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tracing_mistake_stops_before_any_stage(case, outputs, caplog):
    overrides, start = CASES[case]
    line = run_and_capture(outputs, caplog, overrides)
    assert line.removeprefix("error: ").startswith(start), line
