"""The attribution graph page: the pruned graph drawn by layer and position, and its features' contexts.

One self-contained HTML page per run (no plotly: an inline SVG, like the SAE dashboard's
pages; a few lines of script only count what was drawn, for the Chromium check).
Nodes sit in a grid: the prompt's positions across, the layers up (token embeddings at
the bottom, logits at the top); features are circles, error nodes squares, and each
edge a line whose width is its |weight| (blue positive, red negative). Below, per
feature shown, its top-activating contexts over the activation store's tokens
(interp_pipeline.analysis.feature_dashboard's contexts, as the SAE dashboard shows them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from interp_pipeline.analysis.feature_dashboard import Context, contexts_of
from interp_pipeline.common.html_page import escape, html_page, html_table
from interp_pipeline.transcoders.attribution import AttributionGraph
from interp_pipeline.transcoders.graph import Pruned

_COUNT_DRAWN = ("<script>window.addEventListener('load',()=>{let n=0;document.querySelectorAll('svg .node')"
                ".forEach(e=>{const b=e.getBBox();if(b.width>0&&b.height>0)n++});"
                "document.body.dataset.drawn=n;});</script>")
_STYLE = ("span.tok{display:inline-block;white-space:pre;font-family:monospace;font-size:12px;padding:0 1px;"
          "margin:0 1px;border-radius:2px}span.max{outline:2px solid #c00;font-weight:bold}td.ctx{text-align:left}")


def _positions(graph: AttributionGraph, pruned: Pruned, width: int, row_h: int) -> dict[int, tuple[float, float]]:
    """x, y of every kept node: column = position, row = layer (E below, logits above), features spread in a cell."""
    where = graph.slices()
    col_w = width / graph.n_pos
    rows = graph.n_layers + 2
    cells: dict[tuple[int, int], list[int]] = {}
    for index in pruned.node_mask.nonzero()[:, 0].tolist():
        if index < where["features"].stop:
            layer, pos = int(graph.active_features[index, 0]) + 1, int(graph.active_features[index, 1])
        elif index < where["errors"].stop:
            layer, pos = divmod(index - where["errors"].start, graph.n_pos)
            layer += 1
        elif index < where["tokens"].stop:
            layer, pos = 0, index - where["tokens"].start
        else:
            layer, pos = rows - 1, graph.n_pos - 1
        cells.setdefault((layer, pos), []).append(index)
    placed = {}
    for (layer, pos), members in cells.items():
        for k, index in enumerate(members):
            x = col_w * pos + col_w * (k + 1) / (len(members) + 1)
            placed[index] = (x, row_h * (rows - layer - 0.5))
    return placed


def graph_svg(graph: AttributionGraph, pruned: Pruned, *, width: int = 900, row_h: int = 70) -> str:
    where = graph.slices()
    placed = _positions(graph, pruned, width, row_h)
    height = row_h * (graph.n_layers + 2) + 30
    targets, sources = pruned.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency[targets, sources]
    top = float(weights.abs().max()) if len(weights) else 1.0
    lines = []
    for t, s, w in zip(targets.tolist(), sources.tolist(), weights.tolist()):
        if s in placed and t in placed:
            (x1, y1), (x2, y2) = placed[s], placed[t]
            lines.append(f"<line class=\"edge\" x1=\"{x1:.1f}\" y1=\"{y1:.1f}\" x2=\"{x2:.1f}\" y2=\"{y2:.1f}\" "
                         f"stroke=\"{'#1f6fd0' if w > 0 else '#d0301f'}\" stroke-opacity=\"0.55\" "
                         f"stroke-width=\"{0.4 + 4 * abs(w) / top:.2f}\"><title>{w:.4g}</title></line>")
    shapes = []
    for index, (x, y) in placed.items():
        influence = float(pruned.cumulative_influence[index])
        if index < where["features"].stop:
            layer, pos, feature = (int(v) for v in graph.active_features[index])
            label = f"feature L{layer} #{feature} at {pos} ({graph.str_tokens[pos]!r}), activation " \
                    f"{float(graph.activation_values[index]):.3g}, cumulative influence {influence:.3f}"
            shapes.append(f"<circle class=\"node feature\" cx=\"{x:.1f}\" cy=\"{y:.1f}\" r=\"6\" fill=\"#e67300\">"
                          f"<title>{escape(label)}</title></circle>")
        elif index < where["errors"].stop:
            layer, pos = divmod(index - where["errors"].start, graph.n_pos)
            shapes.append(f"<rect class=\"node error\" x=\"{x - 5:.1f}\" y=\"{y - 5:.1f}\" width=\"10\" height=\"10\" "
                          f"fill=\"#999\"><title>error L{layer} at {pos}</title></rect>")
        elif index < where["tokens"].stop:
            pos = index - where["tokens"].start
            shapes.append(f"<rect class=\"node token\" x=\"{x - 6:.1f}\" y=\"{y - 6:.1f}\" width=\"12\" height=\"12\" "
                          f"fill=\"#3a7\"><title>{escape(graph.str_tokens[pos])}</title></rect>")
        else:
            row = index - where["logits"].start
            shapes.append(f"<circle class=\"node logit\" cx=\"{x + 14 * row:.1f}\" cy=\"{y:.1f}\" r=\"7\" "
                          f"fill=\"#7a3\"><title>{escape(graph.logit_strs[row])} "
                          f"p={float(graph.logit_probabilities[row]):.3f}</title></circle>")
    col_w = width / graph.n_pos
    labels = "".join(f"<text x=\"{col_w * (p + 0.5):.1f}\" y=\"{height - 8}\" text-anchor=\"middle\" "
                     f"font-size=\"11\">{escape(t)}</text>" for p, t in enumerate(graph.str_tokens))
    layers = "".join(f"<text x=\"2\" y=\"{row_h * (graph.n_layers + 2 - r - 0.5) + 4:.1f}\" font-size=\"10\">"
                     f"{'E' if r == 0 else f'L{r - 1}' if r <= graph.n_layers else 'logits'}</text>"
                     for r in range(graph.n_layers + 2))
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">"
            + "".join(lines) + "".join(shapes) + labels + layers + "</svg>")


def _context_html(context: Context, scale: float) -> str:
    spans = []
    for index, (token, value) in enumerate(zip(context.tokens, context.activations)):
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, value / scale))
        spans.append(f"<span class=\"tok{' max' if index == context.highlight else ''}\" "
                     f"style=\"background:rgba(255,120,0,{alpha:.2f})\">{escape(token)}</span>")
    return "".join(spans)


def store_contexts(model: Any, transcoders: Any, store: Any, features: Sequence[tuple[int, int]], *, n: int,
                   before: int, max_rows: int = 200_000) -> dict[tuple[int, int], list[Context]]:
    """Each (layer, feature)'s ``n`` top-activating contexts over the store's first ``max_rows`` rows."""
    if store is None or n == 0 or not features:
        return {}
    rows = min(store.n_rows, max_rows)
    seq, pos, ids = (torch.as_tensor(a[:rows].astype("int64")) for a in
                     (store.sequences(), store.positions(), store.token_ids()))
    seq = seq - seq.min()
    shape = (int(seq.max()) + 1, int(pos.max()) + 1)
    tokens = torch.zeros(shape, dtype=torch.long)
    valid = torch.zeros(shape, dtype=torch.bool)
    tokens[seq, pos], valid[seq, pos] = ids, True
    found = {}
    for layer in sorted({layer for layer, _ in features}):
        chosen = [f for l, f in features if l == layer]
        transcoder = transcoders[layer]
        x = store.read(transcoders.hook_in(layer), slice(0, rows)).float().to(transcoder.W_enc.device)
        with torch.no_grad():
            acts = transcoder.encode(x)[:, chosen].cpu()  # [rows, len(chosen)]
        grid = torch.zeros(*shape, len(chosen))
        grid[seq, pos] = acts
        for column, feature in enumerate(chosen):
            # A dataset of short prompts repeats sequences: show distinct contexts only.
            distinct: dict[tuple[str, ...], Context] = {}
            for context in contexts_of(model, tokens, grid[..., column], valid, valid, n=20 * n, before=before,
                                       after=1):
                distinct.setdefault((*context.tokens, str(context.highlight)), context)
            found[(layer, feature)] = list(distinct.values())[:n]
    return found


def graph_page(title: str, graphs: Sequence[tuple[AttributionGraph, Pruned, Mapping[str, float]]],
               contexts: Mapping[tuple[int, int], list[Context]], *, max_features: int) -> str:
    parts = [f"<style>{_STYLE}</style>", _COUNT_DRAWN]
    for index, (graph, pruned, summary) in enumerate(graphs):
        parts += [f"<h2>prompt {index}: {escape(graph.prompt)}</h2>",
                  html_table([{"metric": k, "value": f"{v:.4g}"} for k, v in summary.items()],
                             text_columns=("metric",)),
                  graph_svg(graph, pruned)]
        kept = [i for i in pruned.node_mask.nonzero()[:, 0].tolist() if i < graph.n_features]
        kept = sorted(kept, key=lambda i: float(pruned.cumulative_influence[i]))[:max_features]
        rows = []
        for i in kept:
            layer, pos, feature = (int(v) for v in graph.active_features[i])
            shown = contexts.get((layer, feature), [])
            scale = max((c.activation for c in shown), default=0.0)
            rows.append(f"<tr><td class=\"text\">L{layer} #{feature}</td><td class=\"text\">{pos} "
                        f"{escape(repr(graph.str_tokens[pos]))}</td><td>{float(graph.activation_values[i]):.3g}</td>"
                        f"<td>{float(pruned.cumulative_influence[i]):.3f}</td><td class=\"ctx\">"
                        + "<br>".join(_context_html(c, scale) for c in shown) + "</td></tr>")
        head = ("<tr><th>feature</th><th>position</th><th>activation</th><th>cumulative influence</th>"
                "<th>top-activating contexts in the activation store (max token outlined)</th></tr>")
        parts.append(f"<table class=\"features\">{head}{''.join(rows)}</table>" if rows else "<p>no feature kept</p>")
    return html_page(title, parts, meta="features by layer and position; edges by weight (blue +, red -)")
