"""A report as markdown (CI logs, pull requests), JSON, and one self-contained HTML page.

The page embeds each figure as a ``data:`` URI, so it opens offline, from MLflow's artifact
viewer, or attached to a CI run, with nothing beside it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp_pipeline.common.html_page import escape, html_page
from interp_pipeline.report.model import ExperimentReport, ExpectRow

COLUMNS = ("experiment", "metric", "expected", "got", "ok", "source", "why the tolerance")


def _got(row: ExpectRow) -> str:
    return "missing" if row.got is None else f"{row.got:.6g}"


def _rows(reports: Sequence[ExperimentReport]) -> list[tuple[ExperimentReport, ExpectRow]]:
    """Every expect row, and a row for each run that stopped before it could check its own:
    passing rows first, failing ones last (the end of a CI log is what people read)."""
    rows = []
    for report in reports:
        rows.extend((report, row) for row in report.rows)
        if report.status not in (0, 3) and not report.rows:
            rows.append((report, ExpectRow("(run)", "exit 0", None, False, why=report.message or report.status_word)))
    return [r for r in rows if r[1].passed] + [r for r in rows if not r[1].passed]


def summary_line(reports: Sequence[ExperimentReport]) -> str:
    rows = [row for _, row in _rows(reports)]
    failed = sum(not row.passed for row in rows)
    seconds = sum(report.seconds for report in reports)
    verdict = "all met" if failed == 0 and all(r.passed for r in reports) else f"{failed} not met"
    return (f"{len(reports)} experiment(s), {len(rows)} expectation(s): {verdict}; "
            f"{seconds:.0f} s in all ({seconds / 60:.1f} min)")


def _cpu(report: ExperimentReport) -> str:
    return "" if report.cpu_seconds is None else f"{report.cpu_seconds:.1f}"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_row(report: ExperimentReport, row: ExpectRow) -> str:
    cells = (report.name, row.key, row.expected, _got(row), "ok" if row.passed else "**FAIL**", row.source, row.why)
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def to_markdown(reports: Sequence[ExperimentReport], title: str) -> str:
    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    lines = [f"# {title}", "", summary_line(reports), "",
             "| experiment | run | status | time (s) | CPU (s) | expectations met |", "|---|---|---|---:|---:|---|"]
    for report in reports:
        met = sum(row.passed for row in report.rows)
        lines.append(f"| {_md(report.name)} | {_md(' '.join(['+experiment=' + report.experiment, *report.overrides]))}"
                     f" | {report.status_word} | {report.seconds:.1f} | {_cpu(report)} | {met}/{len(report.rows)} |")
    rows = _rows(reports)
    lines += ["", "## Expectations", "", header, *(_md_row(r, row) for r, row in rows if row.passed)]
    failing = [(r, row) for r, row in rows if not row.passed]
    if failing:
        lines += ["", f"## Not met ({len(failing)})", "", header, *(_md_row(r, row) for r, row in failing)]
    return "\n".join(lines) + "\n"


def to_json(reports: Sequence[ExperimentReport], title: str) -> str:
    return json.dumps({"title": title, "summary": summary_line(reports),
                       "passed": all(r.passed for r in reports) and all(row.passed for _, row in _rows(reports)),
                       "experiments": [r.to_dict() for r in reports]}, indent=2) + "\n"


# The report's own, over html_page's common style: text cells left-aligned, numbers right, verdicts coloured.
_STYLE = ("body{max-width:1400px}"
          "th,td{padding:3px 8px;text-align:left;vertical-align:top}"
          "td.num{text-align:right;font-family:monospace}"
          "tr.fail td{background:#fde2e2}tr.ok td.verdict{color:#17662b;font-weight:bold}"
          "tr.fail td.verdict{color:#a40000;font-weight:bold}"
          "figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}"
          "figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#555}")


def _html_rows(rows: Sequence[tuple[ExperimentReport, ExpectRow]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for report, row in rows:
        verdict = "ok" if row.passed else "FAIL"
        body.append(
            f"<tr class=\"{'ok' if row.passed else 'fail'}\"><td>{escape(report.name)}</td><td>{escape(row.key)}</td>"
            f"<td class=\"num\">{escape(row.expected)}</td><td class=\"num\">{escape(_got(row))}</td>"
            f"<td class=\"verdict\">{verdict}</td><td>{escape(row.source)}</td><td>{escape(row.why)}</td></tr>")
    return f"<table class=\"expect\"><tr>{head}</tr>{''.join(body)}</table>"


def _data_uri(path: Path) -> str | None:
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


def _figures(report: ExperimentReport, limit: int | None) -> str:
    shown = []
    for figure in report.figures[:limit]:
        uri = _data_uri(Path(figure.path))
        if uri is not None:
            shown.append(f"<figure><img src=\"{uri}\" alt=\"{escape(figure.name)}\">"
                         f"<figcaption>{escape(figure.name)}</figcaption></figure>")
    more = len(report.figures) - len(shown)
    note = f"<p class=\"meta\">{more} more figure(s) in the run's MLflow artifacts.</p>" if more > 0 else ""
    return "".join(shown) + note if shown else "<p class=\"meta\">No figures.</p>"


def to_html(reports: Sequence[ExperimentReport], title: str, *, figures_per_experiment: int | None = None) -> str:
    """One page: the summary, a table of runs, every expectation, then each experiment's figures."""
    runs = "".join(
        f"<tr class=\"{'ok' if r.passed else 'fail'}\"><td>{escape(r.name)}</td>"
        f"<td>{escape(' '.join(['+experiment=' + r.experiment, *r.overrides]))}</td>"
        f"<td class=\"verdict\">{escape(r.status_word)}</td><td class=\"num\">{r.seconds:.1f}</td>"
        f"<td class=\"num\">{_cpu(r)}</td>"
        f"<td class=\"num\">{sum(row.passed for row in r.rows)}/{len(r.rows)}</td>"
        f"<td>{escape(r.run_dir)}</td></tr>" for r in reports)
    parts = ["<table class=\"runs\"><tr><th>experiment</th><th>run</th><th>status</th><th>time (s)</th><th>CPU (s)</th>"
             f"<th>expectations met</th><th>run directory</th></tr>{runs}</table>",
             "<h2>Expectations</h2>", _html_rows(_rows(reports))]
    for report in reports:
        parts.append(f"<h2>{escape(report.name)}: figures</h2>")
        if report.message:
            parts.append(f"<p class=\"meta\">{escape(report.message)}</p>")
        parts.append(_figures(report, figures_per_experiment))
    return html_page(title, parts, meta=f"{summary_line(reports)}; written {time.strftime('%Y-%m-%d %H:%M:%S')}",
                     style=_STYLE)
