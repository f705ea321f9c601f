"""A cached result is what was computed: an entry edited or damaged since it was written is recomputed."""

from __future__ import annotations

import json
import logging

import pytest

from interp_pipeline.pipeline.spec import parse_stages
from interp_pipeline.runner.runner import CACHED, COMPUTED, PipelineRunner
from interp_pipeline.runner.stage_cache import MARKER, StageCache
from tests.support.stages import CALLS


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


def spec(*, in_place=False):
    stages = [
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": 2.0}},
    ]
    if in_place:
        stages.append({"name": "in_place", "fn": "t_in_place", "inputs": {"numbers": "numbers"}})
    return parse_stages(stages, name="p", label="p")


def run(tmp_path, **kwargs):
    runner = PipelineRunner(spec(**kwargs), StageCache(tmp_path / "cache"))
    return {o.name: o for o in runner.run()}, runner


def entry_dir(runner, stage):
    return runner.cache.entry_path(runner.spec.stage(stage).definition.name, runner.keys[stage])


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_edited_output_file_is_recomputed_with_a_warning_naming_the_entry(tmp_path, caplog):
    _, runner = run(tmp_path)
    entry = entry_dir(runner, "numbers")
    output = entry / "numbers.json"
    output.write_text(output.read_text().replace("2", "9"))  # same length: only the hash can tell
    caplog.set_level(logging.WARNING)
    outcomes, again = run(tmp_path)
    assert outcomes["numbers"].status == COMPUTED and outcomes["scaled"].status == CACHED
    assert CALLS["t_numbers"] == 2
    (message,) = warnings_of(caplog)
    assert str(entry) in message and "numbers.json changed" in message and "recomputing" in message
    # The recomputed entry replaced the edited one, and is served from now on.
    assert again.cache.lookup("t_numbers", again.keys["numbers"]).load_output("numbers") == [0, 1, 2]
    caplog.clear()
    third, _ = run(tmp_path)
    assert {o.status for o in third.values()} == {CACHED} and warnings_of(caplog) == []


def test_an_edited_metric_in_complete_json_is_recomputed_not_reported(tmp_path, caplog):
    first, runner = run(tmp_path)
    marker = entry_dir(runner, "scaled") / MARKER
    record = json.loads(marker.read_text())
    record["metrics"]["total"] = 600.0
    marker.write_text(json.dumps(record))
    caplog.set_level(logging.WARNING)
    outcomes, _ = run(tmp_path)
    assert outcomes["scaled"].status == COMPUTED
    assert outcomes["scaled"].metrics["total"] == first["scaled"].metrics["total"] == 6.0
    (message,) = warnings_of(caplog)
    assert str(marker.parent) in message and "complete.json was edited" in message


@pytest.mark.parametrize("damage", ["delete", "add", "artifact"])
def test_a_missing_added_or_changed_file_is_not_served(tmp_path, damage):
    _, runner = run(tmp_path)
    entry = entry_dir(runner, "scaled")
    if damage == "delete":
        (entry / "scaled.json").unlink()
    elif damage == "add":
        (entry / "artifacts" / "extra.txt").write_text("not from the stage")
    else:
        (artifact,) = [p for p in (entry / "artifacts").rglob("*") if p.is_file()]
        artifact.write_text(artifact.read_text() + " ")
    outcomes, _ = run(tmp_path)
    assert outcomes["scaled"].status == COMPUTED and outcomes["numbers"].status == CACHED


def test_an_entry_without_hashes_from_older_code_is_recomputed(tmp_path, caplog):
    _, runner = run(tmp_path)
    marker = entry_dir(runner, "numbers") / MARKER
    record = json.loads(marker.read_text())
    old = {k: v for k, v in record.items() if k not in ("integrity", "files", "digest")}
    marker.write_text(json.dumps(old))
    caplog.set_level(logging.WARNING)
    outcomes, _ = run(tmp_path)
    assert outcomes["numbers"].status == COMPUTED
    assert "records no content hashes" in warnings_of(caplog)[0]


def test_a_stage_dir_is_checked_small_files_by_hash_big_ones_by_size(tmp_path, caplog):
    _, runner = run(tmp_path, in_place=True)
    data = runner.cache.stage_dir("t_in_place", runner.keys["in_place"])
    assert run(tmp_path, in_place=True)[0]["in_place"].status == CACHED
    (data / "small.json").write_text((data / "small.json").read_text().replace("1", "7"))
    caplog.set_level(logging.WARNING)
    outcomes, _ = run(tmp_path, in_place=True)
    assert outcomes["in_place"].status == COMPUTED
    assert "small.json changed" in warnings_of(caplog)[0]
    assert json.loads((data / "small.json").read_text()) == [0, 1, 2]  # rewritten in an emptied stage_dir
    with open(data / "big.bin", "r+b") as handle:
        handle.truncate(1000)
    assert run(tmp_path, in_place=True)[0]["in_place"].status == COMPUTED
    assert (data / "big.bin").stat().st_size == 99_840
    assert run(tmp_path, in_place=True)[0]["in_place"].status == CACHED


def test_a_changed_entry_file_keeps_a_stage_dir_that_still_matches(tmp_path):
    # The stage_dir can be vouched for by the (intact) record: the stage resumes into it.
    _, runner = run(tmp_path, in_place=True)
    data = runner.cache.stage_dir("t_in_place", runner.keys["in_place"])
    (data / "kept-by-the-resume").write_text("")
    output = entry_dir(runner, "in_place") / "written.json"
    output.write_text(output.read_text() + "\n")
    assert run(tmp_path, in_place=True)[0]["in_place"].status == COMPUTED
    assert (data / "kept-by-the-resume").exists()
