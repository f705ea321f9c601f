"""The one HTML page writer: a stage's interactive figures and tables, and a run's report.

One page per stage rather than one file per figure. plotly.js (about 4.8 MB) is either
inlined once, before the first figure (a page that must stand alone), or, with
:class:`SharedPlotly`, a file beside the pages that every page of the run loads (the
tracker writes it once per run: ``Tracker.log_html_page``), so a page stays small.

MLflow's artifact viewer shows a page from a ``blob:`` URL in a sandboxed frame, where
a path beside the page does not resolve: there the page loads the same file from the
tracking server's ``/get-artifact`` endpoint. The file is named ``.mjs`` because the
server sends ``.js`` artifacts as text/plain with ``nosniff``, which a browser refuses
to run; ``.mjs`` goes out as text/javascript.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLOTLY_JS = "plotly.min.mjs"

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
          "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
          "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}"
          "th{background:#f2f2f2}td.text{text-align:left;font-family:monospace}"
          "p.meta{color:#555}table.header th{text-align:left}"
          "section.grid{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin-bottom:2em}"
          "section.grid h3{font-size:14px;margin:60px 0 0}")


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


@dataclass(frozen=True)
class SharedPlotly:
    """Where a page finds plotly.js: ``src`` relative to the page, else (in MLflow's viewer) the
    artifact ``artifact_path`` of run ``run_id`` on the server that shows the page."""

    src: str = PLOTLY_JS
    artifact_path: str = PLOTLY_JS
    run_id: str | None = None

    def script(self) -> str:
        tags = f"<script src=\"{html.escape(self.src)}\"></script>\n"
        if self.run_id:
            query = json.dumps(f"/get-artifact?path={self.artifact_path}&run_uuid={self.run_id}")
            tags += ("<script>if (!window.Plotly && location.protocol === 'blob:') {"
                     " var server = new URL(location.href.slice(5)).origin;"
                     f" document.write('<script src=\"' + server + {query} + '\"><\\/script>'); }}</script>\n")
        return tags


def plotly_js() -> str:
    """The plotly.js bundle that ships with the plotly package (the version its figures expect)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def html_page(title: str, parts: Sequence[Any], *, meta: str = "", shared_plotly: SharedPlotly | None = None,
              style: str = "") -> str:
    """A page: ``title``, a line of ``meta`` (model, prompts, metric ...), then each part in order,
    a plotly figure or a string of HTML. plotly.js is inlined unless ``shared_plotly`` says where it is.
    ``style`` is CSS of the page's own, after (so over) the common style."""
    body = [f"<h1>{escape(title)}</h1>"]
    if meta:
        body.append(f"<p class=\"meta\">{escape(meta)}</p>")
    js_written = shared_plotly is not None
    if shared_plotly is not None and any(not isinstance(part, str) for part in parts):
        body.append(shared_plotly.script())
    for part in parts:
        if isinstance(part, str):
            body.append(part)
        else:
            import plotly.io as pio  # here: a page of HTML alone (a run's report) needs no plotly

            body.append(pio.to_html(part, full_html=False, include_plotlyjs=not js_written,
                                    config={"displaylogo": False}))
            js_written = True
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
