"""What a patching stage logs of its sweeps: the figures of interp_pipeline.patching.plots as PNG
and HTML artifacts, one page with every sweep (header, figures, top-k tables), and the top-k
components as metrics and a markdown table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from interp_pipeline.html_page import escape
from interp_pipeline.patching.labelled import LabelledArray
from interp_pipeline.patching.plots import colorbar_label, heatmap_figure, heatmap_html
from interp_pipeline.tracking.base import Tracker

_UNSAFE_METRIC = re.compile(r"[^A-Za-z0-9_.\-/ ]")


def logs_figures(tracker: Tracker) -> bool:
    # NULL_TRACKER (and any tracker not overriding log_figure) drops figures: skip drawing them.
    return type(tracker).log_figure is not Tracker.log_figure


def log_sweep_figures(tracker: Tracker, array: LabelledArray, prefix: str = "", title: str | None = None, *,
                      interactive: bool = True) -> None:
    """Log ``array``'s heatmap as ``{prefix}{name}.png`` (matplotlib) and, if ``interactive``,
    ``{prefix}{name}.html`` (plotly; :func:`sweep_page` puts many arrays in one page instead).

    The suffix is part of the name, so a dotted sweep name ("blocks.3.attn") keeps its
    last part when the tracker sets the file's suffix. A prefix with a "/" puts
    the files in a folder of the run's artifacts ("patching/").
    """
    if not logs_figures(tracker):
        return
    import matplotlib.pyplot as plt

    figure = heatmap_figure(array, title)
    try:
        tracker.log_figure(figure, f"{prefix}{array.name}.png")
    finally:
        plt.close(figure)  # the tracker may have closed it already; closing twice is harmless
    if interactive:
        tracker.log_figure(heatmap_html(array, title), f"{prefix}{array.name}.html")


def sweep_page_parts(arrays: Sequence[LabelledArray], header: Mapping[str, Any] | None = None,
                     top_k: int = 10) -> list[Any]:
    """The parts of a sweep page (for html_page / Tracker.log_html_page): a table of ``header``
    (model, prompts, metric, normalization ...), links to the sweeps, then per sweep its
    figure and a table of its ``top_k`` cells."""
    from interp_pipeline.html_page import html_table

    parts: list[Any] = []
    if header:
        rows = "".join(f"<tr><th>{escape(k)}</th><td class=\"text\">{escape(v)}</td></tr>" for k, v in header.items())
        parts.append(f"<table class=\"header\">{rows}</table>")
    links = " &middot; ".join(f"<a href=\"#{_anchor(a.name)}\">{escape(a.name)}</a>" for a in arrays)
    parts.append(f"<p>{links}</p>")
    for array in arrays:
        method = array.attrs.get("method")
        parts.append(f"<section class=\"sweep\" id=\"{_anchor(array.name)}\"><div>")
        parts.append(heatmap_html(array, title=f"{array.name} ({method})" if method else array.name))
        parts.append("</div>")
        if top_k:
            rows = [{"rank": r["rank"], "component": r["label"], colorbar_label(array): r["value"]}
                    for r in top_k_rows(array, top_k)]
            parts.append(f"<div><h3>top {len(rows)} by |value|</h3>{html_table(rows, text_columns=('component',))}"
                         "</div>")
        parts.append("</section>")
    return parts


def sweep_page(arrays: Sequence[LabelledArray], title: str = "Activation patching",
               header: Mapping[str, Any] | None = None, top_k: int = 10) -> str:
    """One self-contained HTML page (plotly.js inlined once) of :func:`sweep_page_parts`."""
    from interp_pipeline.html_page import html_page

    return html_page(title, sweep_page_parts(arrays, header, top_k))


def _anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _metric_name(name: str) -> str:
    """A name MLflow accepts for a metric or tag: unsafe characters become "_", and no empty,
    "." or ".." path segments (MLflow refuses a name that normalizes as a path to another)."""
    segments = [s for s in _UNSAFE_METRIC.sub("_", name).split("/") if s not in ("", ".", "..")]
    return "/".join(segments) or "sweep"


def top_k_rows(array: LabelledArray, k: int, by: str = "abs") -> list[dict[str, Any]]:
    """The top k cells as {rank, label, value, coords: {dim: label}}, rank 1 first."""
    return [
        {"rank": rank, "label": array.label(index), "value": float(array.values[index]),
         "coords": {d: array.coords[d][i] for d, i in zip(array.dims, index)}}
        for rank, index in enumerate(array.top_k_indices(k, by), start=1)
    ]


def top_k_table(rows: list[dict[str, Any]], value_header: str = "value") -> str:
    """rank, component, value as aligned plain text (for a terminal or a log)."""
    labels = [row["label"] for row in rows]
    values = [f"{row['value']:.4g}" for row in rows]
    label_w = max([len("component"), *map(len, labels)])
    value_w = max([len(value_header), *map(len, values)])
    lines = [f"{'rank':>4}  {'component':<{label_w}}  {value_header:>{value_w}}"]
    lines += [f"{row['rank']:>4}  {label:<{label_w}}  {value:>{value_w}}" for row, label, value in zip(rows, labels, values)]
    return "\n".join(lines) + "\n"


def log_top_k(tracker: Tracker, array: LabelledArray, k: int = 10, prefix: str = "", by: str = "abs") -> str:
    """Log the k cells ranked first (see LabelledArray.top_k_indices for ``by``); return them as a text table.

    Metrics ``{prefix}{name}/top{rank}`` hold the values and tags of the same names
    the labels ("L9H9"), so the MLflow UI shows both; ``{prefix}{name}_top{k}.json``
    holds the table with each cell's coordinates. Names are made MLflow-safe.
    """
    rows = top_k_rows(array, k, by)
    base = _metric_name(f"{prefix}{array.name}")
    tracker.log_metrics({f"{base}/top{row['rank']}": row["value"] for row in rows})
    tracker.set_tags({f"{base}/top{row['rank']}": row["label"] for row in rows})
    tracker.log_dict(
        {"name": array.name, "dims": list(array.dims), "by": by, "attrs": dict(array.attrs), "top": rows},
        f"{prefix}{array.name}_top{k}.json",
    )
    return top_k_table(rows, colorbar_label(array))
