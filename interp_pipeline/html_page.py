"""Self-contained HTML pages for a stage's interactive figures and tables.

One page per stage rather than one file per figure: plotly.js (about 4.8 MB) is inlined
once, before the first figure, so the page opens offline and inside MLflow's artifact
viewer (which shows a page on its own, so a script beside it would not load), and a run
with many figures does not carry many copies of it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
          "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
          "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}"
          "th{background:#f2f2f2}td.text{text-align:left;font-family:monospace}"
          "p.meta{color:#555}")


def escape(text: Any) -> str:
    """Text for HTML (and for plotly labels, which read a small HTML subset: "<bos>" would vanish)."""
    return html.escape(str(text), quote=False)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
               text_columns: Sequence[str] = ()) -> str:
    """An HTML table of ``rows`` (floats to 4 significant digits); ``text_columns`` left-aligned, monospace."""
    columns = list(columns or (rows[0].keys() if rows else []))
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)

    def cell(column: str, value: Any) -> str:
        shown = f"{value:.4g}" if isinstance(value, float) else escape(value)
        return f"<td class=\"text\">{shown}</td>" if column in text_columns else f"<td>{shown}</td>"

    body = "".join("<tr>" + "".join(cell(c, row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, parts: Sequence[Any], *, meta: str = "") -> str:
    """A page: ``title``, a line of ``meta`` (model, prompts, metric ...), then each part in order,
    a plotly figure or a string of HTML."""
    import plotly.io as pio

    body = [f"<h1>{escape(title)}</h1>"]
    if meta:
        body.append(f"<p class=\"meta\">{escape(meta)}</p>")
    js_written = False
    for part in parts:
        if isinstance(part, str):
            body.append(part)
        else:
            body.append(pio.to_html(part, full_html=False, include_plotlyjs=not js_written))
            js_written = True
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
