"""Circuits from edge scores: the order edges join in (top-n or greedy), cut at a size or a threshold,
then pruned; all as [n_senders, n_receivers] bool masks over the graph (graph.py).

- ``top_n``: the edges by score, largest first (``absolute``: by magnitude, as hannamw/EAP-IG and
  MIB rank them, since an edge that hurts the metric matters as much as one that helps);
- ``greedy``: grown from the logits, each step adding the best edge into a node already in the
  circuit (hannamw/EAP-IG's greedy search, Hanna et al. 2024), so every edge has a path onward;
- ``threshold``: every edge whose score reaches ``threshold``.

Pruning drops the edges into nodes that no longer reach the logits (their output would go
nowhere), repeated until nothing changes; a greedy circuit is already connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_pipeline.circuits.graph import Graph

if TYPE_CHECKING:
    from torch import Tensor

SELECTIONS = ("top_n", "greedy", "threshold")


def ranking_key(scores: Tensor, absolute: bool) -> Tensor:
    return scores.abs() if absolute else scores


def edge_order(scores: Tensor, graph: Graph, selection: str, *, absolute: bool) -> Tensor:
    """Every edge (flat index sender * n_receivers + receiver) in the order it joins the circuit."""
    import torch

    key = ranking_key(scores.float().cpu(), absolute).masked_fill(~graph.valid, float("-inf"))
    if selection != "greedy":
        return torch.argsort(key.flatten(), descending=True, stable=True)[:graph.n_edges]
    # Greedy: a candidate edge's receiver belongs to a node already in the circuit (or the logits).
    n_receivers = graph.n_receivers
    feeds = graph.receiver_nodes  # a shared key/value input opens with the first head of its group
    open_receivers = torch.zeros(n_receivers, dtype=torch.bool)
    open_receivers[graph.logits_receiver] = True
    available = key.clone()
    order = torch.empty(graph.n_edges, dtype=torch.long)
    for step in range(graph.n_edges):
        candidates = available.masked_fill(~open_receivers[None, :], float("-inf"))
        flat = int(torch.argmax(candidates))
        if candidates.flatten()[flat] == float("-inf"):  # the rest cannot reach the logits
            rest = torch.argsort(available.flatten(), descending=True)[:graph.n_edges - step]
            order[step:] = rest
            break
        order[step] = flat
        available.view(-1)[flat] = float("-inf")
        open_receivers |= feeds[flat // n_receivers]
    return order


def circuit_of(order: Tensor, n_edges: int, graph: Graph, *, prune: bool) -> Tensor:
    """The first ``n_edges`` of ``order`` as a mask, pruned when asked."""
    import torch

    mask = torch.zeros(graph.n_senders * graph.n_receivers, dtype=torch.bool)
    mask[order[:n_edges]] = True
    mask = mask.view(graph.n_senders, graph.n_receivers)
    return prune_circuit(mask, graph) if prune else mask


def threshold_circuit(scores: Tensor, graph: Graph, threshold: float, *, absolute: bool, prune: bool) -> Tensor:
    mask = (ranking_key(scores.float().cpu(), absolute) >= threshold) & graph.valid
    return prune_circuit(mask, graph) if prune else mask


def prune_circuit(mask: Tensor, graph: Graph) -> Tensor:
    """Drop edges into nodes without a path to the logits, until none is left."""
    import torch

    feeds = graph.receiver_nodes
    is_logits = torch.arange(graph.n_receivers) == graph.logits_receiver
    mask = mask.clone()
    while True:
        reaches = mask.any(1)  # [n_senders]: a sender with an edge left (its receiver still reaches)
        # A receiver lives while one node it feeds reaches on (a key/value input: any head of its group).
        alive = is_logits | (feeds & reaches[:, None]).any(0)
        pruned = mask & alive[None, :]
        if torch.equal(pruned, mask):
            return mask
        mask = pruned


def circuit_nodes(mask: Tensor, graph: Graph) -> Tensor:
    """[n_senders] bool: the senders with an edge in the circuit."""
    return mask.any(1)


def heads_in(mask: Tensor, graph: Graph) -> set[tuple[int, int]]:
    """(layer, head) of the circuit's heads."""
    nodes = circuit_nodes(mask, graph)
    return {(layer, head) for layer in range(graph.n_layers) for head in range(graph.n_heads)
            if bool(nodes[graph.head_sender(layer, head)])}
