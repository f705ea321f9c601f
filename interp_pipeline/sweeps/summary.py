"""A sweep's summary: one table of its jobs (overrides, exit status, key metrics), the best
job, a plot of the swept parameters against the metrics, and one MLflow run holding them.

Read from the jobs' ``job_result.json`` files in the sweep directory, so it works the same
for every launcher whose jobs write to a directory the driver can read (basic, joblib,
Ray on one machine or a shared filesystem, submitit).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from interp_pipeline.common.exit_status import EXIT_OK
from interp_pipeline.sweeps.job_results import JobRecord

MAX_DEFAULT_METRICS = 4  # with no sweep.objective nor sweep.summary: the first few metrics the jobs share


@dataclass
class SweepSummary:
    records: list[JobRecord]
    swept: dict[int, dict[str, str]]  # job -> the overrides that differ between jobs
    metrics: list[str]
    best: list[int]  # the best job (one objective) or the Pareto front (several); [] when none succeeded
    objective: list[str]
    directions: list[str]


def swept_overrides(records: Sequence[JobRecord]) -> dict[int, dict[str, str]]:
    """Each job's overrides less those every job shares (the experiment's fixed ones)."""
    split = {r.job_num: dict(o.split("=", 1) for o in r.overrides if "=" in o) for r in records}
    keys = dict.fromkeys(k for overrides in split.values() for k in overrides)
    varying = [k for k in keys if len({overrides.get(k) for overrides in split.values()}) > 1]
    return {job: {k: overrides[k] for k in varying if k in overrides} for job, overrides in split.items()}


def _chosen_metrics(records: Sequence[JobRecord], objective: Sequence[str], summary: Sequence[str]) -> list[str]:
    named = list(dict.fromkeys([*objective, *summary]))
    if named:
        return named
    measured = [r for r in records if r.metrics]
    shared = [k for k in (measured[0].metrics if measured else {}) if all(k in r.metrics for r in measured)]
    return shared[:MAX_DEFAULT_METRICS]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def best_jobs(records: Sequence[JobRecord], objective: Sequence[str], directions: Sequence[str]) -> list[int]:
    """The best succeeded job for one objective; the non-dominated ones (Pareto front) for several."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = {}
    for record in records:
        values = [record.metrics.get(name, math.nan) for name in objective]
        if record.status == EXIT_OK and values and not any(math.isnan(v) for v in values):
            scored[record.job_num] = [s * v for s, v in zip(signs, values)]
    if not scored:
        return []
    if len(objective) == 1:
        return [max(scored, key=lambda job: scored[job][0])]
    return [job for job, values in scored.items()
            if not any(_dominates(other, values) for o, other in scored.items() if o != job)]


def summarise(records: list[JobRecord], objective: Sequence[str], directions: Sequence[str],
              summary: Sequence[str]) -> SweepSummary:
    return SweepSummary(records, swept_overrides(records), _chosen_metrics(records, objective, summary),
                        best_jobs(records, objective, directions), list(objective), list(directions))


def _short(text: str, digits: int | None) -> str:
    number = _numeric(text)
    return text if digits is None or number is None or "." not in text else f"{number:.{digits}g}"


def _rows(result: SweepSummary, digits: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows; ``digits``: significant digits of the numbers shown (None: as the jobs gave them)."""
    params = list(dict.fromkeys(k for overrides in result.swept.values() for k in overrides))
    header = ["job", *params, "status", *result.metrics, "best"]
    rows = []
    for record in result.records:
        values = [(f"{record.metrics[m]:.{digits}g}" if digits else repr(record.metrics[m])) if m in record.metrics
                  else "" for m in result.metrics]
        swept = [_short(result.swept[record.job_num].get(p, ""), digits) for p in params]
        mark = "*" if record.job_num in result.best else ""
        rows.append([str(record.job_num), *swept, str(record.status), *values, mark])
    return header, rows


def render_table(result: SweepSummary, title: str = "sweep") -> str:
    from rich.console import Console
    from rich.table import Table

    header, rows = _rows(result, digits=4)
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, justify="right" if name not in ("best",) else "center", overflow="fold")
    for row in rows:
        table.add_row(*row)
    buffer = StringIO()
    Console(file=buffer, width=160, color_system=None).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")


def to_csv(result: SweepSummary) -> str:
    header, rows = _rows(result)
    buffer = StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def plot(result: SweepSummary) -> Any | None:
    """Each numeric swept parameter against each key metric (log x when it spans a decade; red: the best
    job, grey crosses: jobs not ok), and the first two objectives against each other; None when
    nothing numeric was swept or measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in result.records if any(m in r.metrics for m in result.metrics)]
    params = [p for p in dict.fromkeys(k for o in result.swept.values() for k in o)
              if all(_numeric(result.swept[r.job_num].get(p, "")) is not None for r in done)]
    pairs = [(p, m) for m in result.metrics for p in params]
    front = result.objective[:2] if len(result.objective) >= 2 else []
    panels = len(pairs) + (1 if front else 0)
    if not done or not panels:
        return None
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    for axis, (param, metric) in zip(axes[0], pairs):
        for ok, style in ((True, {"marker": "o"}), (False, {"marker": "x", "color": "grey", "label": "not ok"})):
            points = [(float(result.swept[r.job_num][param]), r.metrics[metric], r.job_num in result.best)
                      for r in done if metric in r.metrics and (r.status == EXIT_OK) == ok]
            if points:
                xs, ys, best = zip(*points)
                colours = {"c": ["tab:red" if b else "tab:blue" for b in best]} if ok else {}
                axis.scatter(xs, ys, **style, **colours)
        xs = [float(result.swept[r.job_num][param]) for r in done]
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            axis.set_xscale("log")
        axis.set_xlabel(param)
        axis.set_ylabel(metric, fontsize=8)
    if front:
        axis = axes[0][-1]
        points = [(r.metrics[front[0]], r.metrics[front[1]], r.job_num in result.best)
                  for r in done if front[0] in r.metrics and front[1] in r.metrics]
        if points:
            xs, ys, best = zip(*points)
            axis.scatter(xs, ys, c=["tab:red" if b else "tab:blue" for b in best])
        axis.set_xlabel(front[0], fontsize=8)
        axis.set_ylabel(front[1], fontsize=8)
        axis.set_title("objectives (red: best)", fontsize=9)
    figure.tight_layout()
    return figure


def log_summary_run(result: SweepSummary, tracking: Any, experiment_id: str, sweep_id: str, sweep_dir: Path,
                    table: str) -> str:
    """One MLflow run tagged ``sweep.id`` holding the table (text, CSV, and MLflow table), the plot and the best job."""
    from interp_pipeline.tracking.base import save_figure

    best_tags: dict[str, str] = {}
    if result.best:
        best_tags["sweep.best_jobs"] = ",".join(str(j) for j in result.best)
    if len(result.best) == 1:
        best = next(r for r in result.records if r.job_num == result.best[0])
        best_tags.update({"sweep.best_job": str(best.job_num),
                          "sweep.best_overrides": " ".join(f"{k}={v}" for k, v in result.swept[best.job_num].items())})
        if best.run_id:
            best_tags["sweep.best_run_id"] = best.run_id
    run = tracking.start_run(experiment_id, f"sweep summary {sweep_id}", {
        "sweep.id": sweep_id, "sweep.summary": "true", "sweep.dir": str(sweep_dir),
        "sweep.jobs": str(len(result.records)), "sweep.objective": ",".join(result.objective), **best_tags,
        "mlflow.source.name": "interp_pipeline"})
    try:
        if len(result.best) == 1:
            best = next(r for r in result.records if r.job_num == result.best[0])
            run.log_metrics({f"best.{m}": best.metrics[m] for m in result.metrics if m in best.metrics})
        run.log_metrics({"jobs": len(result.records), "jobs_failed": sum(r.status != EXIT_OK for r in result.records)})
        (sweep_dir / "summary.txt").write_text(table + "\n")
        (sweep_dir / "summary.csv").write_text(to_csv(result))
        run.log_artifact(sweep_dir / "summary.txt")
        run.log_artifact(sweep_dir / "summary.csv")
        header, rows = _rows(result)
        # MLflow's table artifact: the UI shows it as a table and compares it across runs.
        tracking.client.log_table(run.run_id, data={h: [row[i] for row in rows] for i, h in enumerate(header)},
                                  artifact_file="sweep_jobs.json")
        figure = plot(result)
        if figure is not None:
            run.log_artifact(save_figure(figure, sweep_dir / "sweep"))
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
    return run.run_id
