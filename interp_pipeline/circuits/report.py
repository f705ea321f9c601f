"""What the circuit_discovery stage logs: metrics per method and circuit size, the faithfulness curves
(PNG), each method's circuit as a graph figure (PNG: nodes by layer, edges weighted by score) and as
JSON (nodes, edges, scores) that other tools can read, and one page (circuits.html) with all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits.circuit import circuit_nodes, heads_in
from interp_pipeline.circuits.graph import Graph

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.circuits.config import CircuitsConfig
    from interp_pipeline.circuits.faithfulness import Baselines, Curve
    from interp_pipeline.tracking.base import Tracker


@dataclass
class MethodResult:
    method: str
    scores: Tensor  # [n_senders, n_receivers]
    curve: Curve
    circuit: Tensor  # bool mask: the circuit of n_edges (or over the threshold)
    circuit_faithfulness: float
    circuit_value: float  # the raw metric with the circuit alone
    smallest: tuple[int, float] | None  # (edges taken, faithfulness) of the smallest circuit reaching the target
    seconds: float


@dataclass
class CircuitReport:
    graph: Graph
    settings: CircuitsConfig
    results: list[MethodResult]
    top_heads: list[tuple[int, int, float]]  # by exact head_out patching
    baselines: Baselines
    metric: Any

    def metrics(self) -> dict[str, float]:
        """The scalars: per method its CPR, CMD, circuit, smallest circuit, agreement and comparisons."""
        import torch

        n_edges = self.graph.n_edges
        by_method = {r.method: r for r in self.results}
        out: dict[str, float] = {}
        for r in self.results:
            m = r.method
            out.update({f"{m}/cpr": r.curve.cpr, f"{m}/cmd": r.curve.cmd, f"{m}/seconds": r.seconds,
                        f"{m}/circuit_edges": int(r.circuit.sum()), f"{m}/circuit_faithfulness": r.circuit_faithfulness,
                        f"{m}/circuit_{self.metric.name}": r.circuit_value})
            if r.smallest is not None:
                out.update({f"{m}/smallest_edges": r.smallest[0], f"{m}/smallest_fraction": r.smallest[0] / n_edges,
                            f"{m}/smallest_faithfulness": r.smallest[1]})
            if self.top_heads:
                heads = heads_in(r.circuit, self.graph)
                out[f"{m}/top_heads_in_circuit"] = sum((l, h) in heads for l, h, _ in self.top_heads) / len(self.top_heads)
            if "eap" in by_method and m != "eap":
                out[f"{m}/cpr_minus_eap"] = r.curve.cpr - by_method["eap"].curve.cpr
            if "exact" in by_method and m != "exact":
                valid = self.graph.valid
                pair = torch.stack([r.scores[valid], by_method["exact"].scores[valid]]).double()
                if bool((pair.std(1) > 0).all()):
                    out[f"{m}/corr_exact"] = float(torch.corrcoef(pair)[0, 1])
        return out

    def circuit_json(self, result: MethodResult) -> dict[str, Any]:
        """Nodes, edges and scores of one method's circuit (names as hannamw/EAP-IG and MIB write them)."""
        mask = result.circuit
        senders, receivers = mask.nonzero(as_tuple=True)
        nodes = circuit_nodes(mask, self.graph)
        return {
            "method": result.method, "metric": self.metric.name, "ablation": self.settings.ablation,
            "graph": {"n_layers": self.graph.n_layers, "n_heads": self.graph.n_heads,
                      "n_key_value_heads": self.graph.n_kv_heads, "mlp": self.graph.has_mlp,
                      "n_edges": self.graph.n_edges},
            "nodes": [self.graph.sender_names[i] for i in nodes.nonzero().flatten().tolist()] + ["logits"],
            "edges": [{"from": self.graph.sender_names[s], "to": self.graph.receiver_names[r],
                       "score": float(result.scores[s, r])} for s, r in zip(senders.tolist(), receivers.tolist())],
            "faithfulness": result.circuit_faithfulness,
        }

    def log(self, tracker: Tracker) -> None:
        from interp_pipeline.circuits import figures

        tracker.log_metrics(self.metrics())
        for r in self.results:
            for n, f in zip(r.curve.n_edges, r.curve.faithfulness):  # MLflow's step: the circuit's edges
                tracker.log_metrics({f"{r.method}/faithfulness": f}, step=n)
            tracker.log_dict(self.circuit_json(r), f"circuit_{r.method}.json")
            tracker.log_dict({"fractions": r.curve.fractions, "n_edges": r.curve.n_edges, "values": r.curve.values,
                              "faithfulness": r.curve.faithfulness, "ratio": r.curve.ratio}, f"curve_{r.method}.json")
        if not figures.logs_figures(tracker):
            return
        import matplotlib.pyplot as plt

        curve = figures.curve_figure(self.results, self.settings.target_faithfulness)
        tracker.log_figure(curve, "faithfulness.png")
        plt.close(curve)
        for r in self.results:
            drawing = figures.circuit_figure(self.graph, r)
            tracker.log_figure(drawing, f"circuit_{r.method}.png")
            plt.close(drawing)
        tracker.log_html_page(figures.page_parts(self), "circuits.html", "Circuit discovery")
