"""The sweep summary: table, best job or Pareto front, plot, and the MLflow run that holds them."""

from __future__ import annotations

import csv
import io

from mlflow.tracking import MlflowClient

from interp_pipeline.sweeps.job_results import JobRecord, read_job_results, write_job_result
from interp_pipeline.sweeps.summary import best_jobs, log_summary_run, plot, render_table, summarise, to_csv
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking

CE, L0 = "eval.model_performance_preservation/ce_loss_score", "eval.sparsity/l0"
FIXED = ["+experiment=sae_l1_search", "model=toy_induction"]


def records() -> list[JobRecord]:
    # l1 up: sparser (L0 down) and a worse CE loss score; job 3 missed its expect: block
    rows = [(0, "0.5", 0.95, 40.0, 0), (1, "2.0", 0.80, 9.0, 0), (2, "8.0", 0.40, 4.0, 0), (3, "1.0", 0.99, 35.0, 3)]
    return [JobRecord(job, [f"sae.l1_coefficient={l1}", *FIXED], status, {CE: ce, L0: l0, "eval.other": 1.0},
                      run_id=f"run{job}") for job, l1, ce, l0, status in rows]


def test_the_best_job_is_the_best_that_succeeded():
    assert best_jobs(records(), [CE], ["maximize"]) == [0]  # job 3 scores higher but missed expect:
    assert best_jobs(records(), [L0], ["minimize"]) == [2]
    assert best_jobs([r for r in records() if r.status], [CE], ["maximize"]) == []


def test_several_objectives_give_the_pareto_front():
    extra = JobRecord(4, ["sae.l1_coefficient=3.0"], 0, {CE: 0.30, L0: 6.0})  # dominated by job 2
    assert sorted(best_jobs([*records(), extra], [L0, CE], ["minimize", "maximize"])) == [0, 1, 2]


def test_table_shows_swept_overrides_status_and_the_named_metrics(tmp_path):
    for record in records():
        write_job_result(tmp_path / str(record.job_num), record)
    result = summarise(read_job_results(tmp_path), [CE], ["maximize"], [L0])
    assert result.swept[1] == {"sae.l1_coefficient": "2.0"}  # the fixed overrides are left out
    assert result.metrics == [CE, L0]
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert [r["status"] for r in rows] == ["0", "0", "0", "3"]
    assert [r["best"] for r in rows] == ["*", "", "", ""]
    assert float(rows[2][L0]) == 4.0 and "eval.other" not in rows[0]
    table = render_table(result)
    assert "sae.l1_coefficient" in table and "0.95" in table


def test_summary_run_holds_table_plot_and_best_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    result = summarise(records(), [L0, CE], ["minimize", "maximize"], [])
    figure = plot(result)
    assert len(figure.axes) == 3  # l1 against each objective, and the objectives against each other
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = MlflowTracking(uri)
    experiment_id = tracking.experiment_id("sweep_test")
    result = summarise(records(), [CE], ["maximize"], [L0])
    run_id = log_summary_run(result, tracking, experiment_id, "sweep-1", sweep_dir, render_table(result))
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweep.id"] == "sweep-1" and run.data.tags["sweep.best_job"] == "0"
    assert run.data.tags["sweep.best_overrides"] == "sae.l1_coefficient=0.5"
    assert run.data.metrics[f"best.{CE}"] == 0.95 and run.data.metrics["jobs_failed"] == 1
    names = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"summary.txt", "summary.csv", "sweep_jobs.json", "sweep.png"} <= names
