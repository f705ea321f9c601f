"""The circuit figures: faithfulness curves (matplotlib, and plotly for the page) and a circuit drawn
as a graph (nodes by layer, heads side by side, edges as lines whose width follows |score|, blue
where the score is positive and red where negative: the colours of the patching heatmaps)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.patching.grid_report import logs_figures  # noqa: F401  (re-exported for report.py)

if TYPE_CHECKING:
    from interp_pipeline.circuits.graph import Graph

# report.py's MethodResult and CircuitReport arrive as Any: report.py imports this module.
MethodResult = CircuitReport = Any


def curve_figure(results: list[MethodResult], target: float) -> Any:
    """Faithfulness against the fraction of edges kept, one line per method (log-scaled above 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4))
    for r in results:
        xs = [max(f, 1e-4) for f in r.curve.fractions]
        axes.plot(xs, r.curve.faithfulness, marker="o", label=f"{r.method} (CPR {r.curve.cpr:.3f})")
    axes.axhline(1.0, color="grey", lw=0.8)
    axes.axhline(target, color="grey", lw=0.8, ls="--")
    axes.set_xscale("log")
    axes.set_xlabel("fraction of edges kept (0 drawn at 1e-4)")
    axes.set_ylabel("faithfulness (normalised)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _positions(graph: Graph) -> dict[str, tuple[float, float]]:
    """Node name -> (x, y): the input at the bottom, each layer's heads in a row, its MLP above, logits on top."""
    width = graph.n_heads
    pos = {"input": (width / 2, 0.0)}
    for layer in range(graph.n_layers):
        for head in range(graph.n_heads):
            pos[f"a{layer}.h{head}"] = (head + 0.5, 2.0 * layer + 1)
        if graph.has_mlp:
            pos[f"m{layer}"] = (width / 2, 2.0 * layer + 2)
    pos["logits"] = (width / 2, 2.0 * graph.n_layers + 1)
    return pos


def _receiver_point(graph: Graph, receiver: int, pos: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Where an edge into ``receiver`` ends: its node, or the middle of the heads a shared key/value input feeds."""
    if receiver == graph.logits_receiver:
        return pos["logits"]
    points = [pos[graph.sender_names[n]] for n in graph.receiver_nodes[:, receiver].nonzero().flatten().tolist()]
    return sum(x for x, _ in points) / len(points), points[0][1]


def circuit_figure(graph: Graph, result: MethodResult) -> Any:
    """The circuit of ``result`` as a graph; the drawn edge joins the sender to the receiving node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _positions(graph)
    mask = result.circuit
    senders, receivers = mask.nonzero(as_tuple=True)
    values = result.scores[senders, receivers]
    biggest = float(values.abs().max()) if len(values) else 1.0
    figure, axes = plt.subplots(figsize=(max(5.0, 0.6 * graph.n_heads + 2), 1.1 * graph.n_layers + 3))
    for s, r, v in zip(senders.tolist(), receivers.tolist(), values.tolist()):
        (x0, y0), (x1, y1) = pos[graph.sender_names[s]], _receiver_point(graph, r, pos)
        axes.plot([x0, x1], [y0, y1], color="#2166ac" if v >= 0 else "#b2182b",
                  lw=0.3 + 3.0 * abs(v) / (biggest or 1.0), alpha=0.7, zorder=1)
    used = {graph.sender_names[i] for i in mask.any(1).nonzero().flatten().tolist()} | {"logits"}
    for name, (x, y) in pos.items():
        inside = name in used
        axes.scatter([x], [y], s=160 if inside else 40, color="#333" if inside else "#ccc", zorder=2)
        if inside:
            axes.annotate(name, (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    axes.set_yticks([2.0 * layer + 1 for layer in range(graph.n_layers)],
                    [f"layer {layer}" for layer in range(graph.n_layers)])
    axes.set_xticks([])
    axes.set_title(f"{result.method}: {int(mask.sum())} edges, faithfulness {result.circuit_faithfulness:.3f}",
                   fontsize=10)
    figure.tight_layout()
    return figure


def page_parts(report: CircuitReport) -> list[Any]:
    """circuits.html: a header table, the curves (plotly), the per-method table, each circuit's edges."""
    import plotly.graph_objects as go

    from interp_pipeline.common.html_page import html_table

    graph, settings = report.graph, report.settings
    header = html_table([{"graph": f"{graph.n_layers} layers x {graph.n_heads} heads"
                                   f"{f' ({graph.n_kv_heads} key/value heads)' if graph.grouped else ''}"
                                   f"{', MLPs' if graph.has_mlp else ''}: {graph.n_edges} edges",
                          "metric": report.metric.name, "model": f"{report.baselines.model:.4g}",
                          "empty circuit": f"{report.baselines.empty:.4g}", "ablation": settings.ablation,
                          "selection": settings.selection}], text_columns=("graph",))
    curves = go.Figure()
    for r in report.results:
        curves.add_trace(go.Scatter(x=[max(f, 1e-4) for f in r.curve.fractions], y=r.curve.faithfulness,
                                    mode="lines+markers", name=r.method,
                                    text=[f"{n} edges" for n in r.curve.n_edges]))
    curves.update_layout(title="Faithfulness against circuit size", xaxis_type="log", width=720, height=420,
                         xaxis_title="fraction of edges kept", yaxis_title="faithfulness")
    metrics = report.metrics()
    rows = [{"method": r.method, **{k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{r.method}/")}}
            for r in report.results]
    parts: list[Any] = ["<h2>Circuit discovery</h2>", header, curves, "<h3>Per method</h3>", html_table(rows)]
    if report.top_heads:
        heads = ", ".join(f"L{layer}H{head} ({value:.3f})" for layer, head, value in report.top_heads)
        parts.append(f"<p>Top heads by exact head_out patching: {heads}</p>")
    for r in report.results:
        edges = sorted(report.circuit_json(r)["edges"], key=lambda e: -abs(e["score"]))[:20]
        parts += [f"<h3>{r.method}: top edges of the circuit</h3>", html_table(edges, text_columns=("from", "to"))]
    return parts
