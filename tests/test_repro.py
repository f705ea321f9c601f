"""``interp-pipeline repro`` end to end on a tiny suite (two smoke runs, one made to miss its expect),
and the report page opened in headless Chromium (Debian's ``chromium``; .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_EXPECT
from interp_pipeline.report.model import ExperimentReport, Figure
from interp_pipeline.report.render import to_html
from tests.conftest import cli_env, run_cli


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro")
    suite = folder / "tiny.yaml"
    suite.write_text(yaml.safe_dump({"title": "tiny suite", "experiments": [
        {"name": "smoke_ok", "experiment": "smoke"},
        # An untrained model's loss is >= ln(128) = 4.85: a ceiling of 4.0 cannot be met.
        {"name": "smoke_missed", "experiment": "smoke", "overrides": ["expect.stats.loss_mean.max=4.0"]},
    ]}))
    outputs, out = folder / "outputs", folder / "report"
    result = run_cli(["repro", "--suite", str(suite), "--out", str(out), f"paths.outputs={outputs}"], outputs,
                     timeout=600)
    return result, out, outputs


def test_a_suite_writes_markdown_json_and_html_and_exits_3_when_an_expectation_is_missed(suite_run):
    result, out, _ = suite_run
    assert result.returncode == EXIT_EXPECT, result.stdout + result.stderr
    markdown = (out / "report.md").read_text()
    assert result.stdout.rstrip().endswith(markdown.rstrip().splitlines()[-1])  # the report closes the log
    # Failing rows come last, under their own heading, the missed one named with its experiment.
    failing = markdown.split("## Not met (1)")[1]
    assert "| smoke_missed | stats.loss_mean | >= 4.85, <= 4 |" in failing and "**FAIL**" in failing
    # The source and tolerance reason come from the experiment's expect entry (conf/experiment/smoke.yaml).
    assert re.search(r"\| smoke_ok \| stats.loss_mean \| >= 4.85, <= 5.35 \| 5\.\d+ \| ok \| uniform guessing over "
                     r"128 tokens: ln 128 = 4.85 \| measured 5.13-5.22", markdown.split("## Not met")[0])
    data = json.loads((out / "report.json").read_text())
    assert data["passed"] is False
    ok, missed = (ExperimentReport.from_dict(e) for e in data["experiments"])
    assert ok.passed and ok.status == 0 and not missed.passed and missed.status == EXIT_EXPECT
    assert ok.seconds > 0 and 0 < ok.cpu_seconds and ok.rows[0].got == pytest.approx(missed.rows[0].got)
    assert ok.figures and Path(ok.figures[0].path).is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "smoke_missed" in html


def test_every_run_writes_its_own_report_and_logs_the_page_to_mlflow(suite_run):
    _, out, outputs = suite_run
    pages = sorted(out.glob("*/report.html"))
    assert [p.parent.name for p in pages] == ["01-smoke_ok", "02-smoke_missed"]
    assert "data:image/png;base64," in pages[0].read_text()
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    parents = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2
    for run in parents:
        assert "report.html" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_an_unknown_suite_is_a_config_error_naming_the_option(tmp_path):
    result = run_cli(["repro", "--suite", "ofline"], tmp_path / "outputs", timeout=120)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.strip().splitlines() == [
        "error: --suite: expected a suite in conf/suite (gpu, offline) or a YAML file, found 'ofline' "
        "(did you mean 'offline'?)"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (Debian; .ci/run installs it)")
    return found


def _chromium_run(*args: str) -> subprocess.CompletedProcess[str]:
    # As root (CI containers) Chromium refuses to start without --no-sandbox.
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=cli_env(Path("/tmp")))


def test_the_report_page_renders_its_tables_and_figures_in_headless_chromium(suite_run, tmp_path):
    from PIL import Image

    _, out, _ = suite_run
    report = ExperimentReport.read_json(out / "02-smoke_missed" / "report.json")
    # A figure of one known colour beside the run's own: its pixels in the screenshot prove that
    # the embedded PNGs decode and show, not just that the markup names them.
    marker = tmp_path / "marker.png"
    Image.new("RGB", (240, 160), (31, 119, 180)).save(marker)
    report.figures.insert(0, Figure("marker/marker.png", str(marker)))
    page = tmp_path / "page.html"
    page.write_text(to_html([report], "render check"))

    dom = _chromium_run("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table class=\"runs\">" in dom.stdout and "<table class=\"expect\">" in dom.stdout
    # The run's row and its missed expectation's row, marked as failing.
    assert dom.stdout.count("<tr class=\"fail\">") == 2
    assert "<td>stats.loss_mean</td><td class=\"num\">&gt;= 4.85, &lt;= 4</td>" in dom.stdout
    assert dom.stdout.count("src=\"data:image/png;base64,") == 2

    shot = tmp_path / "shot.png"
    taken = _chromium_run(f"--screenshot={shot}", "--window-size=1400,1400", page.as_uri())
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = list(Image.open(shot).convert("RGB").getdata())
    marker_pixels = sum(p == (31, 119, 180) for p in pixels)
    failed_row = sum(p == (0xFD, 0xE2, 0xE2) for p in pixels)  # the missed expectation's row background
    not_white = sum(p != (255, 255, 255) for p in pixels)
    assert marker_pixels >= 0.9 * 240 * 160, marker_pixels
    assert failed_row > 1000, failed_row
    assert not_white > marker_pixels + failed_row + 20000  # text, rules and the run's own figure too
