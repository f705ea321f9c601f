"""Hostile or broken config files in a user's search path: refused in one line naming the file and the key
path, exit status 2, before any work; an alias bomb within seconds and bounded memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from interp_pipeline.config.safe_yaml import UnsafeConfig, check_yaml_text
from tests.conftest import run_cli

HEADER = "# @package _global_\ndefaults:\n  - /model: tiny\n  - /data: random_tokens\n  - /stats: default\n"


def alias_bomb(levels: int = 12, width: int = 10) -> str:
    """Each anchor repeats the one before ``width`` times: 10**12 values once expanded, 1 kB of text."""
    lines = ["pipeline: smoke", "a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "# @package _global_\n" + "\n".join(lines) + "\n"


def user_experiment(folder: Path, name: str, body: str) -> list[str]:
    (folder / "experiment").mkdir(parents=True, exist_ok=True)
    (folder / "experiment" / f"{name}.yaml").write_text(body)
    return [f"hydra.searchpath=[file://{folder}]", f"+experiment={name}"]


def test_the_scan_refuses_bombs_tags_and_size_naming_the_key_path():
    started = time.perf_counter()
    with pytest.raises(UnsafeConfig, match=r"^mine.yaml: a\d+\[0\]: expected at most 200,000 values .*alias bomb"):
        check_yaml_text(alias_bomb(), "mine.yaml")
    assert time.perf_counter() - started < 2
    with pytest.raises(UnsafeConfig, match=r"^mine.yaml: model.seed: expected a plain YAML value, found the tag "
                                           r"'!!python/object/apply:os.system'"):
        check_yaml_text("model:\n  n: 1\n  seed: !!python/object/apply:os.system [ls]\n", "mine.yaml")
    with pytest.raises(UnsafeConfig, match=r"^mine.yaml: expected a config file of at most 100 bytes, found 120"):
        check_yaml_text("a: " + "x" * 117, "mine.yaml", max_bytes=100)
    with pytest.raises(UnsafeConfig, match=r"^mine.yaml: b\[1\].c: expected valid YAML, found: .* \(line 2, column 12\)"):
        check_yaml_text("a: 1\nb: [1, {c: ]\n", "mine.yaml")
    # Anchors and aliases within the bound, and plain tags, are fine.
    check_yaml_text("base: &b {lr: 1, tags: [x, y]}\nrun: *b\nn: !!int 3\n", "ok.yaml")


def test_an_alias_bomb_in_a_user_experiment_is_refused_within_seconds(outputs, tmp_path):
    args = user_experiment(tmp_path / "conf", "bomb", alias_bomb())
    started = time.monotonic()
    done = run_cli(args, outputs, timeout=60)
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert f"error: {tmp_path / 'conf/experiment/bomb.yaml'}: a" in done.stderr
    assert "alias bomb" in done.stderr and not (outputs / "cache").exists()
    # the bound holds memory too: the parent's peak is that of a normal start (the CLI ran as a child)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1_500_000  # KiB


def test_a_typo_in_a_user_file_says_what_the_command_line_says(outputs, tmp_path):
    args = user_experiment(tmp_path / "conf", "typo", HEADER + "pipeline: smoke\nstats:\n  batch_size_prompt: 3\n")
    done = run_cli(args, outputs)
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: {tmp_path / 'conf/experiment/typo.yaml'}: stats.batch_size_prompt: expected a key "
                           f"of ActivationStatsConfig ("), line
    assert line.endswith("found 'batch_size_prompt' (did you mean 'batch_size_prompts'?)"), line


def test_a_self_reference_and_an_unknown_tag_are_one_line_status_2(outputs, tmp_path):
    folder = tmp_path / "conf"
    for name, body, expected in [
        ("loop", HEADER + "pipeline: smoke\nseed: ${seed}\n",
         "loop.yaml: seed: could not resolve its interpolation: Recursive interpolation detected"),
        ("tagged", HEADER + "pipeline: smoke\nseed: !!python/object/apply:os.system [echo pwned]\n",
         "tagged.yaml: seed: expected a plain YAML value, found the tag '!!python/object/apply:os.system'"),
        ("long", HEADER + "pipeline: smoke\nseed: '" + "9x" * 5_000 + "'\n",
         "long.yaml: seed: expected integer, found '9x9x9x"),
    ]:
        done = run_cli(user_experiment(folder, name, body), outputs)
        assert done.returncode == 2, done.stdout + done.stderr
        said = done.stdout + done.stderr  # a job's error goes to its log (stdout), a composition error to stderr
        assert said.count("\n") == 1 and expected in said, said[:1000]
        assert len(said) < 400, said[:1000]  # the 10,000-character value is cut
    assert not (outputs / "cache").exists()  # nothing ran


def test_an_outputs_directory_that_cannot_be_written_names_where_the_traceback_went(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    outputs = blocker / "outputs"  # cannot be created: its parent is a file (root ignores chmod)
    done = run_cli(["+experiment=smoke"], outputs, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "(traceback in None)" not in done.stderr
    assert "interp_pipeline-errors.log)" in done.stderr, done.stderr


def test_error_lines_cut_long_quoted_values_and_leave_the_text_between_quotes_alone():
    from interp_pipeline.common.errors import ConfigError

    long = "x" * 10_000
    said = str(ConfigError("k", f"found '{long}' (expected 'short')"))
    assert "(10,000 characters)" in said and said.endswith("(expected 'short')") and len(said) < 300
    # A long unquoted list between two short quoted values is not taken for a value and cut.
    listing = ", ".join(f"stage_{i}" for i in range(100))
    said = str(ConfigError("k", f"found 't_numbr' (registered: {listing}; did you mean 't_numbers'?)"))
    assert said.endswith("did you mean 't_numbers'?)") and "stage_99" in said
