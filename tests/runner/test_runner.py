"""Skip and recompute logic, and atomic completion, on the stage cache (no tracking)."""

from __future__ import annotations

import pytest

from interp_pipeline.common.errors import StageFailed
from interp_pipeline.pipeline.spec import parse_stages
from interp_pipeline.runner.runner import CACHED, COMPUTED, SKIPPED, PipelineRunner
from interp_pipeline.runner.stage_cache import MARKER, StageCache
from tests.support.stages import CALLS


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


def spec(n=3, factor=2.0, *, with_rebuild=False, fail_flag=None):
    stages = [
        {"name": "numbers", "fn": "t_numbers", "params": {"n": n}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": factor}},
    ]
    if with_rebuild:
        stages += [
            {"name": "thing", "fn": "t_rebuild", "params": {"size": 5}},
            {"name": "used", "fn": "t_use", "inputs": {"thing": "thing", "numbers": "numbers"}},
        ]
    if fail_flag is not None:
        stages.append({"name": "fails", "fn": "t_fail", "inputs": {"numbers": "scaled"},
                       "params": {"flag_file": str(fail_flag)}})
    return parse_stages(stages, name="p", label="p")


def run(tmp_path, pipeline, **kwargs):
    runner = PipelineRunner(pipeline, StageCache(tmp_path / "cache"), **kwargs)
    return {o.name: o for o in runner.run()}, runner


def test_second_run_is_served_from_the_cache(tmp_path):
    first, _ = run(tmp_path, spec())
    assert {o.status for o in first.values()} == {COMPUTED}
    second, _ = run(tmp_path, spec())
    assert {o.status for o in second.values()} == {CACHED}
    assert CALLS == {"t_numbers": 1, "t_scale": 1}
    assert second["scaled"].metrics == {"total": 6.0, "value": 4.0}  # what the computing run logged
    assert second["scaled"].cached_from is None  # no tracked run computed it here


def test_changing_a_downstream_parameter_recomputes_only_downstream(tmp_path):
    run(tmp_path, spec())
    outcomes, runner = run(tmp_path, spec(factor=3.0))
    assert outcomes["numbers"].status == CACHED and outcomes["scaled"].status == COMPUTED
    assert CALLS == {"t_numbers": 1, "t_scale": 2}


def test_cached_output_feeds_a_computed_stage(tmp_path):
    run(tmp_path, spec())
    run(tmp_path, spec(factor=10.0))
    entry = StageCache(tmp_path / "cache")
    pipeline = spec(factor=10.0)
    runner = PipelineRunner(pipeline, entry)
    assert runner.entries["scaled"].load_output("scaled") == [0.0, 10.0, 20.0]


def test_force_recomputes_everything(tmp_path):
    run(tmp_path, spec())
    outcomes, _ = run(tmp_path, spec(), force=True)
    assert {o.status for o in outcomes.values()} == {COMPUTED}
    assert CALLS == {"t_numbers": 2, "t_scale": 2}


def test_from_stage_recomputes_that_stage_and_what_follows(tmp_path):
    run(tmp_path, spec(with_rebuild=True))
    CALLS.clear()
    outcomes, _ = run(tmp_path, spec(with_rebuild=True), from_stage="scaled")
    assert outcomes["scaled"].status == COMPUTED
    assert outcomes["numbers"].status == CACHED and outcomes["used"].status == CACHED
    assert CALLS == {"t_scale": 1}


def test_uncached_stage_runs_only_when_something_downstream_computes(tmp_path):
    first, _ = run(tmp_path, spec(with_rebuild=True))
    assert first["thing"].status == COMPUTED and first["used"].status == COMPUTED
    CALLS.clear()
    second, _ = run(tmp_path, spec(with_rebuild=True))
    assert second["thing"].status == SKIPPED and second["used"].status == CACHED
    assert CALLS == {}
    third, _ = run(tmp_path, spec(with_rebuild=True), from_stage="used")
    assert third["thing"].status == COMPUTED and third["used"].status == COMPUTED
    assert not (tmp_path / "cache" / "t_rebuild").exists()  # never stored


def test_failing_stage_leaves_no_complete_result_and_is_recomputed(tmp_path):
    flag = tmp_path / "let-it-pass"
    with pytest.raises(StageFailed, match="stage 'fails' failed: RuntimeError: boom"):
        run(tmp_path, spec(fail_flag=flag))
    fails_dir = tmp_path / "cache" / "t_fail"
    assert not any((p / MARKER).exists() for p in fails_dir.iterdir())
    assert not any(p.name.startswith(".tmp-") for p in fails_dir.iterdir())  # cleaned up
    # The stages before it completed and stay cached.
    flag.touch()
    outcomes, _ = run(tmp_path, spec(fail_flag=flag))
    assert outcomes["fails"].status == COMPUTED and outcomes["scaled"].status == CACHED
    assert CALLS["t_fail"] == 2


def test_interrupted_write_is_never_taken_as_finished(tmp_path):
    cache = StageCache(tmp_path / "cache")
    pending = cache.begin("t_numbers", "k" * 32)
    pending.write_output("numbers", [1, 2, 3])
    # A crash here: nothing was committed.
    assert cache.lookup("t_numbers", "k" * 32) is None
    pending.commit(run_id="r", metrics={}, extra={})
    assert cache.lookup("t_numbers", "k" * 32).load_output("numbers") == [1, 2, 3]


def test_leftovers_of_dead_processes_are_swept(tmp_path):
    cache = StageCache(tmp_path / "cache")
    orphan = tmp_path / "cache" / "t_numbers" / f".tmp-{'k' * 32}-999999999-abcd1234"
    orphan.mkdir(parents=True)
    cache.begin("t_numbers", "k" * 32).abort()
    assert not orphan.exists()


def test_multi_output_stage_must_return_its_declared_outputs(tmp_path):
    outcomes, runner = run(tmp_path, parse_stages(
        [{"name": "numbers", "fn": "t_numbers", "params": {"n": 5}},
         {"name": "split", "fn": "t_split", "inputs": {"numbers": "numbers"}, "params": {"threshold": 2}}],
        name="p", label="p"))
    entry = runner.cache.lookup("t_split", runner.keys["split"])
    assert entry.load_output("low") == [0, 1] and entry.load_output("high") == [2, 3, 4]
