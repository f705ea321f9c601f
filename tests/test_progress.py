"""Progress where no bar can be drawn: log lines at a steady interval (interp_pipeline/common/progress.py)."""

from __future__ import annotations

import logging
import time

from interp_pipeline.common.progress import progress
from tests.conftest import run_cli


def test_off_a_terminal_progress_is_a_log_line_at_a_steady_interval(monkeypatch, caplog):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("INTERP_PIPELINE_PROGRESS_SECONDS", "0.5")
    with caplog.at_level(logging.INFO, logger="interp_pipeline"):
        bar = progress(range(12), desc="train", total=12, unit="step")
        for step in bar:
            time.sleep(0.1)
            bar.set_postfix(loss=1.0 / (step + 1))  # a postfix change alone must not log a line
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 5, lines  # ~1.2 s of work, a line at most every 0.5 s
    assert all(line.strip().startswith("train: ") and "step/s" in line and "ETA" in line for line in lines)
    assert any("loss=" in line for line in lines)


def test_tqdm_disable_turns_the_log_lines_off_too(monkeypatch, caplog):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("INTERP_PIPELINE_PROGRESS_SECONDS", "0.5")
    with caplog.at_level(logging.INFO, logger="interp_pipeline"):
        for _ in progress(range(5), desc="quiet", total=5):
            time.sleep(0.2)
    assert not caplog.records


def test_a_run_piped_to_a_file_logs_each_stage_start_and_its_progress(outputs):
    done = run_cli(["+experiment=smoke", "data.params.n_sequences=200", "stats.batch_size_prompts=1",
                    "runner.check_expect=false"], outputs, TQDM_DISABLE="", INTERP_PIPELINE_PROGRESS_SECONDS="0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[3/3] stats: running activation_stats" in done.stdout
    shown = [line for line in done.stdout.splitlines() if "activation stats: " in line]
    assert shown and all("batch/s" in line for line in shown), done.stdout
    log_file = next((outputs / "runs").rglob("cli.log"))
    assert "activation stats: " in log_file.read_text()
