"""Faithfulness: how much of the model's behaviour a circuit keeps with everything else ablated.

``faithfulness = (m(C) - m(empty)) / (m(model) - m(empty))``: 1 for the whole graph, 0 for the
empty one (its value is the ablated model's: with corrupted ablation, the corrupted run). The
plain ratio m(C) / m(model) is reported beside it. Over a grid of circuit sizes (MIB, Mueller et
al. 2025: fractions 0, 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100% of the edges) this is the
faithfulness curve; MIB's CPR is the area under it and CMD the area between it and 1 (both by
the trapezoid rule over the fraction of edges kept). The smallest circuit reaching a target is
found on the curve, then refined by bisection between the two grid sizes around it (this
assumes faithfulness grows with size there, which it does not always; the reported size is a
circuit that does reach the target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp_pipeline.circuits.circuit import circuit_of
from interp_pipeline.circuits.graph import Graph

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.circuits.ablation import AblatedRuns

MIB_FRACTIONS = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


@dataclass
class Baselines:
    """The raw metric of the whole model and of the empty circuit (everything ablated)."""

    model: float
    empty: float

    @classmethod
    def of(cls, runs: AblatedRuns) -> Baselines:
        import torch

        valid = runs.graph.valid.to(runs.clean_out.device)
        values = runs.values(torch.stack([torch.zeros_like(valid), valid]))
        return cls(float(values[0]), float(values[1]))

    def normalized(self, value: float) -> float:
        span = self.model - self.empty
        return float("nan") if abs(span) < 1e-12 else (value - self.empty) / span

    def ratio(self, value: float) -> float:
        return float("nan") if abs(self.model) < 1e-12 else value / self.model


@dataclass
class Curve:
    fractions: list[float]
    n_edges: list[int]  # edges kept after pruning, per fraction
    values: list[float]  # the raw metric
    faithfulness: list[float]
    ratio: list[float]

    @property
    def cpr(self) -> float:
        return area(self.fractions, self.faithfulness)

    @property
    def cmd(self) -> float:
        return area(self.fractions, [abs(1.0 - f) for f in self.faithfulness])


def area(xs: list[float], ys: list[float]) -> float:
    """Trapezoid rule."""
    return float(sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:])))


def sizes_of(fractions: list[float], graph: Graph) -> list[int]:
    return [int(round(f * graph.n_edges)) for f in fractions]


def faithfulness_curve(runs: AblatedRuns, order: Tensor, fractions: list[float], baselines: Baselines, *,
                       prune: bool) -> Curve:
    """The circuit of each fraction's size (``order``'s first edges), evaluated in as few passes as fit."""
    import torch

    graph = runs.graph
    masks = [circuit_of(order, n, graph, prune=prune) for n in sizes_of(fractions, graph)]
    ablated = ~torch.stack(masks).to(runs.clean_out.device)
    values = [float(v) for v in runs.values(ablated)]
    return Curve(list(fractions), [int(m.sum()) for m in masks], values,
                 [baselines.normalized(v) for v in values], [baselines.ratio(v) for v in values])


def smallest_circuit(runs: AblatedRuns, order: Tensor, curve: Curve, baselines: Baselines, target: float, *,
                     prune: bool) -> tuple[int, float] | None:
    """(edges taken from ``order``, faithfulness) of the smallest circuit found reaching ``target``; None if none."""
    graph = runs.graph
    sizes = sizes_of(curve.fractions, graph)
    above = [i for i, f in enumerate(curve.faithfulness) if f >= target]
    if not above:
        return None
    index = above[0]
    hi, hi_value = sizes[index], curve.faithfulness[index]
    lo = sizes[index - 1] if index > 0 else 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        value = baselines.normalized(float(runs.values(~circuit_of(order, mid, graph, prune=prune)[None]
                                                       .to(runs.clean_out.device))[0]))
        if value >= target:
            hi, hi_value = mid, value
        else:
            lo = mid
    return hi, hi_value
