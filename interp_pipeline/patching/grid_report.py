"""What a patching stage logs of its grids: the figures of interp_pipeline.patching.plots as PNG
and HTML artifacts, one page with every grid (header, figures, top-k tables), the top-k
components as metrics and a markdown table, and every head of a per-head array as a metric."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.html_page import escape
from interp_pipeline.patching.labelled import LabelledArray
from interp_pipeline.patching.plots import colorbar_label, heatmap_figure, heatmap_html
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    from torch import Tensor

_UNSAFE_METRIC = re.compile(r"[^A-Za-z0-9_.\-/ ]")


def logs_figures(tracker: Tracker) -> bool:
    # NULL_TRACKER (and any tracker not overriding log_figure) drops figures: skip drawing them.
    return type(tracker).log_figure is not Tracker.log_figure


def log_grid_figures(tracker: Tracker, array: LabelledArray, prefix: str = "", title: str | None = None, *,
                      interactive: bool = True) -> None:
    """Log ``array``'s heatmap as ``{prefix}{name}.png`` (matplotlib) and, if ``interactive``,
    ``{prefix}{name}.html`` (plotly; :func:`grid_page` puts many arrays in one page instead).

    The suffix is part of the name, so a dotted grid name ("blocks.3.attn") keeps its
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


def grid_page_parts(arrays: Sequence[LabelledArray], header: Mapping[str, Any] | None = None,
                     top_k: int = 10) -> list[Any]:
    """The parts of a grid page (for html_page / Tracker.log_html_page): a table of ``header``
    (model, prompts, metric, normalization ...), links to the grids, then per grid its
    figure and a table of its ``top_k`` cells."""
    from interp_pipeline.common.html_page import html_table

    parts: list[Any] = []
    if header:
        rows = "".join(f"<tr><th>{escape(k)}</th><td class=\"text\">{escape(v)}</td></tr>" for k, v in header.items())
        parts.append(f"<table class=\"header\">{rows}</table>")
    links = " &middot; ".join(f"<a href=\"#{_anchor(a.name)}\">{escape(a.name)}</a>" for a in arrays)
    parts.append(f"<p>{links}</p>")
    for array in arrays:
        method = array.attrs.get("method")
        parts.append(f"<section class=\"grid\" id=\"{_anchor(array.name)}\"><div>")
        parts.append(heatmap_html(array, title=f"{array.name} ({method})" if method else array.name))
        parts.append("</div>")
        if top_k:
            rows = [{"rank": r["rank"], "component": r["label"], colorbar_label(array): r["value"]}
                    for r in top_k_rows(array, top_k)]
            parts.append(f"<div><h3>top {len(rows)} by |value|</h3>{html_table(rows, text_columns=('component',))}"
                         "</div>")
        parts.append("</section>")
    return parts


def grid_page(arrays: Sequence[LabelledArray], title: str = "Activation patching",
               header: Mapping[str, Any] | None = None, top_k: int = 10) -> str:
    """One self-contained HTML page (plotly.js inlined once) of :func:`grid_page_parts`."""
    from interp_pipeline.common.html_page import html_page

    return html_page(title, grid_page_parts(arrays, header, top_k))


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


def log_results(tracker: Tracker, results: Mapping[str, LabelledArray], top_k: int,
                header: Mapping[str, str]) -> None:
    """Everything the activation_patching stage logs of its results: each head of a per-head array as a
    metric (``head_out/L9H9``, which expect: can name), the top-k of every array, a PNG per array, and
    one page with all of them (``patching.html``, :func:`page_header` at its top)."""
    import numpy as np

    tables = []
    for array in results.values():
        if array.dims == ("layer", "head"):  # one metric per head: a few hundred at most
            tracker.log_metrics({f"{array.name}/{array.label(index)}": float(array.values[index])
                                 for index in np.ndindex(array.values.shape)})
        if top_k:
            tables.append(f"## {array.name}\n\n{log_top_k(tracker, array, top_k)}")
        log_grid_figures(tracker, array, interactive=False)
    # plotly.js once per run, beside the page (tracker.log_html_page): the page itself stays small.
    if logs_figures(tracker):
        tracker.log_html_page(grid_page_parts(list(results.values()), header, top_k), "patching.html",
                              "Activation patching")
    if tables:
        tracker.log_text("\n".join(tables), "top_components.md")


_METRIC_MEANING = {
    "logit_diff": "logit of the correct answer minus the wrong one's, at END",
    "answer_prob": "probability of the correct answer at END",
    "kl": "KL divergence from the clean run's END distribution",
    "loss": "next-token loss over every position",
    "prob_diff": "probability of the right candidates minus the wrong ones', at END",
}


def _prompt_text(model: Any, tokens: Tensor) -> str:
    tokenizer = getattr(model, "tokenizer", None)
    ids = tokens.tolist()
    text = tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))
    return text if len(text) <= 200 else text[:199] + "…"


def page_header(model: Any, setup: Any, metric: str, normalize: bool) -> dict[str, str]:
    """What a reader of patching.html needs before the figures: the model, prompts, metric and normalization
    (``setup``: the patching engine's PatchingSetup, its metric calibrated)."""
    cfg = model.cfg
    clean, corrupted = setup.metric.clean_value, setup.metric.corrupted_value
    return {
        "model": f"{cfg.model_name} ({cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model})",
        "prompts": f"{setup.n_prompts} clean/corrupted pairs of {setup.n_pos} tokens",
        "prompt 0 clean": _prompt_text(model, setup.pairs["clean"][0]),
        "prompt 0 corrupted": _prompt_text(model, setup.pairs["corrupted"][0]),
        "metric": f"{metric}: {_METRIC_MEANING.get(metric, metric)}; "
                  f"clean run {clean:.4g}, corrupted run {corrupted:.4g}",
        "normalization": ("(patched - corrupted) / (clean - corrupted): 0 = corrupted run, 1 = clean run" if normalize
                          else "none: the raw metric of the patched run"),
        "positions": "labels are prompt 0's tokens (IO, S1, S2, END marked where every prompt has them there)"
                     if any(key in setup.pairs for key in ("io_pos", "s1_pos")) else "labels are prompt 0's tokens",
    }
