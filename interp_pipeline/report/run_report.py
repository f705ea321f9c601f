"""The report of one run: written beside its outputs (``report.json``, ``report.html``) and logged to
its MLflow run, for every run, so a published value's check reads the same alone or in a suite."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from interp_pipeline.report.expect import ExpectResult
from interp_pipeline.report.model import REPORT_HTML, REPORT_JSON, ExperimentReport, ExpectRow, Figure
from interp_pipeline.report.render import to_html


def stage_figures(stages: Sequence[tuple[str, str, str]], cache_root: Path) -> list[Figure]:
    """The PNG figures the stages left in their cache entries, in pipeline order; ``stages`` holds
    (stage name, stage function, cache key). Stages that are not cached keep no files to show."""
    figures = []
    for name, fn_name, key in stages:
        artifacts = cache_root / fn_name / key / "artifacts"
        for path in sorted(artifacts.rglob("*.png")) if artifacts.is_dir() else []:
            figures.append(Figure(f"{name}/{path.relative_to(artifacts).as_posix()}", str(path)))
    return figures


def build(experiment: str, overrides: Sequence[str], status: int, seconds: float,
          results: Sequence[ExpectResult], figures: Sequence[Figure], run_dir: Path,
          message: str = "") -> ExperimentReport:
    rows = [ExpectRow(r.key, r.expected, r.got, r.passed, r.source, r.why) for r in results]
    # Hydra's task overrides hold the experiment choice too; the report names it on its own.
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("experiment=")]
    return ExperimentReport(experiment, experiment, overrides=overrides, status=status, seconds=seconds, rows=rows,
                            figures=list(figures), run_dir=str(run_dir), message=message)


def write(report: ExperimentReport, run_dir: Path) -> Mapping[str, Path]:
    """``report.json`` and ``report.html`` in ``run_dir``; returns their paths."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / REPORT_JSON, "html": run_dir / REPORT_HTML}
    report.write_json(paths["json"])
    paths["html"].write_text(to_html([report], f"{report.experiment}: run report"))
    return paths
