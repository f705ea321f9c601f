"""Interactive (plotly) figures of the look-inside stages, for their HTML page (interp_pipeline.common.html_page).

Why plotly and not CircuitsVis (TransformerLens's tutorials use ``cv.attention.attention_patterns``):
CircuitsVis's rendered HTML, as ``str()`` or ``show_code()`` give it to be written to a file,
imports its JavaScript from unpkg.com (``render_cdn`` in circuitsvis/utils/render.py), so the
page is blank offline and in MLflow's artifact viewer here. Its offline variant (``local_src``,
chosen only inside Jupyter after a probe of google.com) inlines the whole bundle into every
figure. html_page inlines plotly.js once per stage page instead.

Axes are numeric with token ticks: plotly merges equal category labels, and a token sequence
repeats tokens (the induction probe is nothing but repeats). Labels go through ``escape``:
plotly reads a small HTML subset, in which "<bos>" would vanish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.html_page import escape

if TYPE_CHECKING:
    import numpy as np


def _ticks(labels: Sequence[str]) -> dict[str, Any]:
    return {"tickmode": "array", "tickvals": list(range(len(labels))),
            "ticktext": [escape(t) for t in labels]}


def norms_plot(norms: Mapping[str, np.ndarray], title: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for point, values in norms.items():
        fig.add_trace(go.Scatter(x=list(range(values.shape[1])), y=values.mean(axis=0).tolist(),
                                 mode="lines+markers", name=point))
    fig.update_layout(title=escape(title), xaxis_title="layer", yaxis_title="mean L2 norm over positions",
                      legend_title="hook", width=800, height=450)
    return fig


def attention_plot(patterns: np.ndarray, layers: Sequence[int], heads: Sequence[int],
                   str_tokens: Sequence[str], title: str) -> Any:
    """One heatmap per (layer, head), a drop-down menu to pick which; hover shows query, key and weight."""
    import plotly.graph_objects as go

    n_tok = len(str_tokens)
    labels = [f"{i}: {t!r}" for i, t in enumerate(str_tokens)]
    hover = [[f"query {escape(labels[q])}<br>key {escape(labels[k])}" for k in range(n_tok)] for q in range(n_tok)]
    fig = go.Figure()
    names = []
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            names.append(f"layer {layer}, head {head}")
            fig.add_trace(go.Heatmap(z=patterns[r, c].tolist(), zmin=0, zmax=1, colorscale="Blues",
                                     text=hover, hovertemplate="%{text}<br>attention %{z:.3f}<extra></extra>",
                                     colorbar={"title": "attention<br>probability"}, visible=not names[:-1]))
    buttons = [{"label": name, "method": "update",
                "args": [{"visible": [j == i for j in range(len(names))]},
                         {"title": escape(f"{title}: {name}")}]} for i, name in enumerate(names)]
    side = max(450, 16 * n_tok + 200)
    fig.update_layout(title=escape(f"{title}: {names[0]}"), width=side + 120, height=side,
                      updatemenus=[{"buttons": buttons, "x": 1.0, "y": 1.12, "xanchor": "right"}],
                      xaxis={"title": "key token", **_ticks(str_tokens)},
                      yaxis={"title": "query token", "autorange": "reversed", **_ticks(str_tokens)})
    return fig


def lens_heatmap_plot(values: np.ndarray, cell_tokens: Sequence[Sequence[str]], states: Sequence[str],
                      position_labels: Sequence[str], title: str, scale_label: str) -> Any:
    import plotly.graph_objects as go

    text = [[escape(t) for t in row] for row in cell_tokens]
    fig = go.Figure(go.Heatmap(
        z=values.tolist(), zmin=0, zmax=1, colorscale="Viridis", text=text, texttemplate="%{text}",
        hovertemplate="layer %{y}<br>position %{x}<br>top token %{text}<br>value %{z:.3f}<extra></extra>",
        colorbar={"title": escape(scale_label)}))
    fig.update_layout(title=escape(title), width=max(700, 60 * values.shape[1] + 250),
                      height=max(350, 32 * values.shape[0] + 200),
                      xaxis={"title": "position: input token (cells: top token predicted next)",
                             **_ticks(position_labels)},
                      yaxis={"title": "layer (residual stream entering it)", **_ticks(states)})
    return fig
